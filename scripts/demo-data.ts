// The demo's sample plates: the bench's generator (bench/data.ts), so its images gzip to about
// two thirds as real ones do and the demo's tarball sizes and speeds mean something.
import { fileBytes, makeBases, MB, planPlate, type PlateIds } from '../bench/data.js';

/** Per plate: big enough that compression shows in the numbers, small enough for a demo. */
export const DEMO_PLATE_BYTES = 24 * MB;

/** Every sample object (key, bytes) of `plates` under project/batch, deterministic. */
export function demoObjects(
  project: string,
  batch: string,
  plates: PlateIds[],
): [string, Buffer][] {
  const bases = makeBases();
  return plates.flatMap((p, i) =>
    planPlate(project, batch, p, DEMO_PLATE_BYTES, 1000 + i).map((f): [string, Buffer] => [
      f.key,
      fileBytes(bases, f),
    ]),
  );
}
