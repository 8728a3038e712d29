// The engine recipes of docs/ (docs/README.md): the AWS Batch job definition and submission
// type-checked against @aws-sdk/client-batch's input types, the Kubernetes manifest validated by
// kubernetes-models' schemas and interfaces; and what no schema knows: that their retry rules
// name exactly our exit codes (EXIT, imported, so they cannot drift), and the shard wiring.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigMap, type IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { ServiceAccount, type IServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { Job, type IJob } from 'kubernetes-models/batch/v1/Job';
import { EXIT } from '../../src/cli/exit-codes.js';
import { SHARD_ENV } from '../../src/plates/shard.js';
import { typeErrors } from '../helpers/typecheck.js';
import {
  batchImgbackupArgs,
  batchJobDefinition,
  batchSubmitJob,
  k8sDocuments,
  readDoc,
  type BatchJobDefinition,
} from '../helpers/recipes.js';

/** Exit codes after which the engine should run the shard again: "retry later" (75). */
const RETRIED = [EXIT.waiting];
/** Exit codes after which a retry would fail the same way: failed plates, usage, mismatch. */
const FINAL = [EXIT.platesFailed, EXIT.usage, EXIT.mismatch];
/** Never in a container's environment: credentials come from the job role / service account. */
const KEYS = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'];

const batchTypeErrors = (def: unknown, submit: unknown) =>
  typeErrors(
    "import type { RegisterJobDefinitionCommandInput, SubmitJobCommandInput } from '@aws-sdk/client-batch';\n" +
      `export const def = ${JSON.stringify(def)} satisfies RegisterJobDefinitionCommandInput;\n` +
      `export const submit = ${JSON.stringify(submit)} satisfies SubmitJobCommandInput;\n`,
  );

describe('AWS Batch recipe (docs/aws-batch/)', () => {
  const def = batchJobDefinition();
  const submit = batchSubmitJob();

  test('the job definition and the submission are valid @aws-sdk/client-batch inputs', () => {
    assert.deepEqual(batchTypeErrors(def, submit), []);
  });

  test('the type check fails on a misspelt field, a wrong value or a wrong type', () => {
    const broken = (edit: (d: BatchJobDefinition) => void) => {
      const d = structuredClone(def);
      edit(d);
      return batchTypeErrors(d, submit).join('\n');
    };
    assert.match(
      broken((d) => {
        d.retryStratgy = d.retryStrategy;
      }),
      /'"retryStratgy"' does not exist/,
    );
    assert.match(
      broken((d) => {
        d.retryStrategy.evaluateOnExit[0]!.action = 'RETRY_LATER';
      }),
      /"RETRY_LATER"/,
    );
    assert.match(
      broken((d) => {
        (d.retryStrategy as { attempts: unknown }).attempts = '5';
      }),
      /'string' is not assignable to type 'number'/,
    );
    assert.match(
      batchTypeErrors(def, { ...submit, arrayProperties: { sise: 8 } }).join('\n'),
      /'"sise"' does not exist/,
    );
  });

  test('retryStrategy: RETRY on 75 and on host loss (Spot), EXIT on 1, 2, 3; in the API form', () => {
    const { attempts, evaluateOnExit: rules } = def.retryStrategy;
    assert.ok(attempts >= 2 && attempts <= 10, `attempts ${attempts}: Batch takes 1 to 10`);
    assert.ok(rules.length <= 5, 'Batch takes at most 5 evaluateOnExit rules');
    for (const r of rules) {
      // onExitCode is a string of digits, optionally ending in *, at most 512 characters
      if (r.onExitCode !== undefined) assert.match(r.onExitCode, /^\d{1,511}\*?$/);
      assert.ok(['RETRY', 'EXIT'].includes(r.action.toUpperCase()), r.action);
    }
    const codes = (action: string) =>
      rules
        .filter((r) => r.action.toUpperCase() === action && r.onExitCode)
        .map((r) => r.onExitCode);
    assert.deepEqual(codes('RETRY'), RETRIED.map(String));
    assert.deepEqual(codes('EXIT'), FINAL.map(String));
    // an instance taken back by Spot, or lost, is "Host EC2 (instance i-…) terminated."
    assert.deepEqual(
      rules.filter((r) => r.onStatusReason !== undefined),
      [{ onStatusReason: 'Host EC2*', action: 'RETRY' }],
    );
  });

  test('the container runs imgbackup archive; the shard comes from the array job; no keys', () => {
    const [sh, dashC, script, url] = def.containerProperties.command;
    assert.deepEqual([sh, dashC], ['sh', '-c']);
    // the CSV is fetched to the path --plates names, then imgbackup replaces the shell (signals reach it)
    assert.equal(
      script,
      'aws s3 cp --only-show-errors "$0" /tmp/plates.csv && exec imgbackup "$@"',
    );
    assert.equal(url, 'Ref::platesCsvUrl');
    const args = batchImgbackupArgs(def, submit);
    assert.equal(args[0], 'archive');
    assert.equal(args[args.indexOf('--plates') + 1], '/tmp/plates.csv');
    assert.ok(args.includes('--stream'), 'no tmpdir volume on Batch: --stream');
    assert.ok(!args.some((a) => a.startsWith('--shard')), 'Batch gives the shard itself');
    const env = def.containerProperties.environment.map((e) => e.name);
    // AWS_BATCH_ is Batch's own prefix; the job definition may not set it
    for (const name of env) assert.ok(!name.startsWith('AWS_BATCH_'), name);
    for (const name of [...KEYS, ...SHARD_ENV]) assert.ok(!env.includes(name), name);
    assert.match(
      def.containerProperties.jobRoleArn ?? '',
      /^arn:aws:iam::\d{12}:role\/[\w+=,.@-]+$/,
    );
    assert.equal(submit.jobDefinition, def.jobDefinitionName);
    const { size } = submit.arrayProperties;
    assert.ok(
      Number.isInteger(size) && size >= 2 && size <= 10_000,
      `array size ${size}: 2 to 10000`,
    );
  });
});

/** The manifest's documents by kind; each kind once. */
function manifest() {
  const docs = k8sDocuments();
  const byKind = new Map(docs.map((d) => [d.kind as string, d]));
  assert.equal(byKind.size, docs.length, 'one document of each kind');
  assert.deepEqual([...byKind.keys()].sort(), ['ConfigMap', 'Job', 'ServiceAccount']);
  return {
    job: byKind.get('Job') as unknown as IJob,
    sa: byKind.get('ServiceAccount') as unknown as IServiceAccount,
    cm: byKind.get('ConfigMap') as unknown as IConfigMap,
  };
}

const k8sTypeErrors = (m: ReturnType<typeof manifest>) =>
  typeErrors(
    "import type { IJob } from 'kubernetes-models/batch/v1/Job';\n" +
      "import type { IServiceAccount } from 'kubernetes-models/v1/ServiceAccount';\n" +
      "import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';\n" +
      `export const job = ${JSON.stringify(m.job)} satisfies IJob;\n` +
      `export const sa = ${JSON.stringify(m.sa)} satisfies IServiceAccount;\n` +
      `export const cm = ${JSON.stringify(m.cm)} satisfies IConfigMap;\n`,
  );

describe('Kubernetes recipe (docs/kubernetes/archive-job.yaml)', () => {
  const m = manifest();
  const spec = m.job.spec!;
  const pod = spec.template.spec!;
  const container = pod.containers[0]!;

  test("every document passes kubernetes-models' schema validation", () => {
    new Job(m.job).validate();
    new ServiceAccount(m.sa).validate();
    new ConfigMap(m.cm).validate();
  });

  test('and its interfaces: no field Kubernetes does not know', () => {
    assert.deepEqual(k8sTypeErrors(m), []);
  });

  test('the checks fail on a wrong value, a wrong type or a misspelt field', () => {
    const broken = (edit: (spec: Record<string, unknown>) => void): IJob => {
      const job = structuredClone(m.job);
      edit(job.spec as unknown as Record<string, unknown>);
      return job;
    };
    assert.throws(
      () => new Job(broken((s) => (s.completionMode = 'indexed'))).validate(),
      /completionMode must be equal to one of the allowed values/,
    );
    assert.throws(
      () => new Job(broken((s) => (s.completions = '8'))).validate(),
      /completions must be integer/,
    );
    const misspelt = broken((s) => {
      s.backoffLimitPerIndx = s.backoffLimitPerIndex;
      delete s.backoffLimitPerIndex;
    });
    assert.match(
      k8sTypeErrors({ ...m, job: misspelt }).join('\n'),
      /'"backoffLimitPerIndx"' does not exist/,
    );
  });

  test('podFailurePolicy: FailIndex on 1, 2, 3; Count (retry) on 75; disruptions ignored', () => {
    const rules = spec.podFailurePolicy!.rules;
    const codes = (action: string) =>
      rules
        .filter((r) => r.action === action && r.onExitCodes)
        .map((r) => {
          assert.equal(r.onExitCodes!.containerName, container.name);
          assert.equal(r.onExitCodes!.operator, 'In');
          const v = r.onExitCodes!.values;
          // the API wants them ordered, without duplicates
          assert.deepEqual(
            v,
            [...new Set(v)].sort((a, b) => a - b),
          );
          return v;
        })
        .flat();
    assert.deepEqual(codes('FailIndex'), FINAL);
    assert.deepEqual(codes('Count'), RETRIED);
    assert.deepEqual(
      rules.filter((r) => r.onPodConditions),
      [{ action: 'Ignore', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] }],
    );
    // podFailurePolicy requires it; FailIndex requires backoffLimitPerIndex
    assert.equal(pod.restartPolicy, 'Never');
    assert.ok((spec.backoffLimitPerIndex ?? 0) >= 1);
  });

  test('shards: Indexed, IMGBACKUP_SHARD_COUNT = completions, the index from Kubernetes', () => {
    assert.equal(spec.completionMode, 'Indexed');
    const env = new Map((container.env ?? []).map((e) => [e.name, e.value]));
    assert.equal(env.get('IMGBACKUP_SHARD_COUNT'), String(spec.completions));
    assert.ok((spec.parallelism ?? 1) <= spec.completions!);
    for (const name of [
      'JOB_COMPLETION_INDEX',
      'AWS_BATCH_JOB_ARRAY_INDEX',
      'AWS_BATCH_JOB_ARRAY_SIZE',
    ])
      assert.ok(!env.has(name), `${name} is the engine's to set`);
    const args = container.command ?? [];
    assert.deepEqual(args.slice(0, 2), ['imgbackup', 'archive']);
    assert.ok(!args.some((a) => a.startsWith('--shard')));
  });

  test('tmpdir on a per-pod ephemeral volume; the CSV from the ConfigMap; IRSA, no keys', () => {
    const args = container.command ?? [];
    const mountOf = (volume: string) =>
      container.volumeMounts?.find((v) => v.name === volume)?.mountPath;
    const tmpdir = args[args.indexOf('--tmpdir') + 1];
    const scratch = pod.volumes?.find((v) => mountOf(v.name) === tmpdir);
    assert.ok(
      scratch?.ephemeral?.volumeClaimTemplate,
      `--tmpdir ${tmpdir} is not an ephemeral volume`,
    );
    const plates = args[args.indexOf('--plates') + 1];
    const csvVolume = pod.volumes?.find((v) => v.configMap?.name === m.cm.metadata?.name);
    assert.equal(plates, `${mountOf(csvVolume!.name)}/plates.csv`);
    assert.match(m.cm.data?.['plates.csv'] ?? '', /^plate_id,plate_id_full\n/);
    assert.equal(pod.serviceAccountName, m.sa.metadata?.name);
    assert.match(
      m.sa.metadata?.annotations?.['eks.amazonaws.com/role-arn'] ?? '',
      /^arn:aws:iam::\d{12}:role\/[\w+=,.@-]+$/,
    );
    const env = (container.env ?? []).map((e) => e.name);
    for (const name of KEYS) assert.ok(!env.includes(name), name);
    assert.equal(container.envFrom, undefined, 'no env from secrets');
    // the same namespace for the three
    assert.equal(new Set([m.job, m.sa, m.cm].map((d) => d.metadata?.namespace)).size, 1);
  });
});

test('docs/README.md says what each exit code makes the engines do', () => {
  const text = readDoc('README.md');
  for (const code of [...RETRIED, ...FINAL])
    assert.match(text, new RegExp(`^\\| ${code} \\|`, 'm'));
});
