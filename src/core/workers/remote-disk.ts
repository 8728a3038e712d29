import type { MessagePort } from 'node:worker_threads';
import { DiskBudget } from '../disk.js';
import { deserializeError, type MainMessage, type WorkerMessage } from './protocol.js';

/**
 * A worker's view of the run's tmpdir budget, which the main thread holds for every plate:
 * reserve asks the main thread and waits for its answer; the release tells it.
 */
export class RemoteDiskBudget extends DiskBudget {
  private next = 0;
  private readonly pending = new Map<
    number,
    { go: () => void; fail: (e: Error) => void; onWait?: () => void }
  >();

  constructor(
    capacity: number,
    private readonly port: MessagePort,
  ) {
    super(capacity);
  }

  override async reserve(
    need: number,
    signal: AbortSignal,
    onWait?: () => void,
  ): Promise<() => void> {
    signal.throwIfAborted();
    const id = (this.next += 1);
    const granted = new Promise<void>((go, fail) =>
      this.pending.set(id, { go, fail, ...(onWait ? { onWait } : {}) }),
    );
    this.send({ type: 'reserve', id, need });
    const onAbort = () => this.pending.get(id)?.fail(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await granted;
    } catch (err) {
      this.send({ type: 'release', id }); // a grant already on its way is given back
      throw err;
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.pending.delete(id);
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.send({ type: 'release', id });
    };
  }

  /** An answer from the main thread. */
  answer(m: MainMessage): void {
    if (m.type === 'waiting') this.pending.get(m.id)?.onWait?.();
    if (m.type === 'reserved') this.pending.get(m.id)?.go();
    if (m.type === 'reserve-failed') this.pending.get(m.id)?.fail(deserializeError(m.error));
  }

  private send(m: WorkerMessage): void {
    this.port.postMessage(m);
  }
}
