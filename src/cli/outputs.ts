// stdout and stderr can fail under a running command: `imgbackup restore-status … | grep -q`
// closes the pipe at its first match (EPIPE), `--json > out.json` can fill a disk (ENOSPC).
// Unheard, such an error kills the process with a stack trace, mid-plate, cleaning up nothing.

export interface OutputLoss {
  stream: 'stdout' | 'stderr';
  /** The errno name (EPIPE, ENOSPC, …), or the message when there is none. */
  code: string;
}

export interface OutputWatch {
  /** The first write error seen on stdout or stderr, if any. */
  lost(): OutputLoss | undefined;
  /** Resolves once every write made so far has ended: an error of the last one is seen first. */
  settled(): Promise<void>;
}

/** Calls `onLost` once, at the first write error. The listeners stay: a late error is heard. */
export function watchOutputs(onLost: (loss: OutputLoss) => void): OutputWatch {
  let loss: OutputLoss | undefined;
  const streams = { stdout: process.stdout, stderr: process.stderr } as const;
  for (const [name, stream] of Object.entries(streams)) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (loss) return;
      loss = { stream: name as OutputLoss['stream'], code: err.code ?? err.message };
      onLost(loss);
    });
  }
  const ended = (s: NodeJS.WriteStream) => new Promise<void>((r) => s.write('', () => r()));
  return {
    lost: () => loss,
    settled: async () => {
      await Promise.all([ended(process.stdout), ended(process.stderr)]);
    },
  };
}
