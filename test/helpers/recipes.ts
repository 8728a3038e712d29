// The engine recipes under docs/, read as the engines would: what the tests check and run.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

export const DOCS = fileURLToPath(new URL('../../../docs/', import.meta.url));

export const BATCH_JOB_DEFINITION = 'aws-batch/job-definition.json';
export const BATCH_SUBMIT_JOB = 'aws-batch/submit-job.json';
export const K8S_JOB = 'kubernetes/archive-job.yaml';

export function readDoc(path: string): string {
  return readFileSync(`${DOCS}${path}`, 'utf8');
}

export interface BatchJobDefinition {
  jobDefinitionName: string;
  parameters: Record<string, string>;
  containerProperties: {
    command: string[];
    environment: { name: string; value: string }[];
    jobRoleArn?: string;
  };
  retryStrategy: {
    attempts: number;
    evaluateOnExit: {
      onExitCode?: string;
      onStatusReason?: string;
      onReason?: string;
      action: string;
    }[];
  };
  [k: string]: unknown;
}

export interface BatchSubmitJob {
  jobDefinition: string;
  arrayProperties: { size: number };
  parameters: Record<string, string>;
  [k: string]: unknown;
}

export const batchJobDefinition = () =>
  JSON.parse(readDoc(BATCH_JOB_DEFINITION)) as BatchJobDefinition;
export const batchSubmitJob = () => JSON.parse(readDoc(BATCH_SUBMIT_JOB)) as BatchSubmitJob;

/** Every document of the manifest, as plain data; a YAML error throws. */
export function k8sDocuments(): Record<string, unknown>[] {
  return parseAllDocuments(readDoc(K8S_JOB)).map((d) => {
    if (d.errors.length) throw new Error(`${K8S_JOB}: ${d.errors[0]!.message}`);
    return d.toJS() as Record<string, unknown>;
  });
}

/**
 * The Batch container's imgbackup arguments, with Ref:: parameters substituted as Batch does (the
 * submission's over the definition's defaults). The command is `sh -c SCRIPT URL imgbackup-args…`.
 */
export function batchImgbackupArgs(def: BatchJobDefinition, submit: BatchSubmitJob): string[] {
  const params = { ...def.parameters, ...submit.parameters };
  return def.containerProperties.command.slice(4).map((a) =>
    a.replace(/^Ref::(\w+)$/, (_, name: string) => {
      const v = params[name];
      if (v === undefined) throw new Error(`Ref::${name} has no parameter`);
      return v;
    }),
  );
}

/** `args` with the value after each flag of `values` replaced. */
export function withFlagValues(args: string[], values: Record<string, string>): string[] {
  return args.map((a, i) => {
    const flag = args[i - 1];
    return flag !== undefined && flag in values ? values[flag]! : a;
  });
}
