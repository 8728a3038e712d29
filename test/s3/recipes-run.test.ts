// The recipes' imgbackup command lines (docs/), run as their engines would run them: every
// array child / every index, with the recipe's environment and the index variable the engine
// sets, on a test S3 with --dry-run. Together they must cover the recipe's plates CSV exactly
// once, each summary naming its shard: the flags exist and the shard count is wired.
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { parse } from 'csv-parse/sync';
import type { IJob } from 'kubernetes-models/batch/v1/Job';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { runCli, serverEnv } from '../helpers/cli.js';
import { BATCH, plateObjects, PROJECT, uploadAll } from '../helpers/fixtures.js';
import {
  batchImgbackupArgs,
  batchJobDefinition,
  batchSubmitJob,
  k8sDocuments,
  withFlagValues,
} from '../helpers/recipes.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

interface Line {
  type: string;
  plateId?: string;
  status?: string;
  shard?: { index: number; count: number; source: string };
}

const docs = k8sDocuments();
const job = docs.find((d) => d.kind === 'Job') as unknown as IJob;
const configMap = docs.find((d) => d.kind === 'ConfigMap') as unknown as IConfigMap;
const CSV = configMap.data!['plates.csv']!;
const PLATES = (parse(CSV, { columns: true }) as { plate_id: string; plate_id_full: string }[]).map(
  (r) => ({ plateId: r.plate_id, plateIdFull: r.plate_id_full }),
);

for (const name of testServerNames()) {
  describe(`the recipes' command lines against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-recipes-test-');
    let live: string;
    let cold: string;
    let csv: string;
    let values: Record<string, string>;

    before(async () => {
      live = await suite.server.newBucket('live');
      cold = await suite.server.newBucket('cold');
      for (const p of PLATES) await uploadAll(suite.client, live, plateObjects(p));
      csv = join(suite.work, 'plates.csv');
      await writeFile(csv, CSV);
      values = {
        '--plates': csv,
        '--project-name': PROJECT,
        '--batch-id': BATCH,
        '--bucket': live,
        '--cold-bucket': cold,
        '--tmpdir': await mkdtemp(join(suite.work, 'scratch-')),
      };
    });

    /** Runs one copy per index; returns the plates each archived (dry run), checking summaries. */
    async function everyIndex(
      args: string[],
      env: NodeJS.ProcessEnv,
      count: number,
      indexEnv: (i: number) => NodeJS.ProcessEnv,
      source: string,
    ): Promise<string[]> {
      const plates: string[] = [];
      for (let i = 0; i < count; i++) {
        const r = await runCli([...withFlagValues(args, values), '--dry-run'], {
          ...env,
          ...serverEnv(suite.server),
          ...indexEnv(i),
        });
        assert.equal(r.code, 0, `index ${i}: ${r.stderr}`);
        const lines = r.stdout
          .trim()
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Line);
        assert.deepEqual(lines.find((l) => l.type === 'summary')?.shard, {
          index: i,
          count,
          source,
          plates: lines.filter((l) => l.type === 'plate').length,
          csvPlates: PLATES.length,
        });
        plates.push(...lines.filter((l) => l.type === 'plate').map((l) => l.plateId!));
      }
      return plates.sort();
    }

    test('AWS Batch: every array child of the submission, AWS_BATCH_JOB_ARRAY_INDEX/SIZE', async () => {
      const def = batchJobDefinition();
      const submit = batchSubmitJob();
      const env = Object.fromEntries(
        def.containerProperties.environment.map((e) => [e.name, e.value]),
      );
      const size = submit.arrayProperties.size;
      const plates = await everyIndex(
        batchImgbackupArgs(def, submit),
        env,
        size,
        (i) => ({ AWS_BATCH_JOB_ARRAY_INDEX: String(i), AWS_BATCH_JOB_ARRAY_SIZE: String(size) }),
        'AWS_BATCH_JOB_ARRAY_INDEX',
      );
      assert.deepEqual(plates, PLATES.map((p) => p.plateId).sort());
    });

    test("Kubernetes: every index of the Indexed Job, JOB_COMPLETION_INDEX and the manifest's env", async () => {
      const container = job.spec!.template.spec!.containers[0]!;
      const [bin, ...args] = container.command!;
      assert.equal(bin, 'imgbackup');
      const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? '']));
      const plates = await everyIndex(
        args,
        env,
        job.spec!.completions!,
        (i) => ({ JOB_COMPLETION_INDEX: String(i) }),
        'JOB_COMPLETION_INDEX',
      );
      assert.deepEqual(plates, PLATES.map((p) => p.plateId).sort());
    });
  });
}
