/**
 * Pure rules of S3's archive classes: which objects need a restore, what their `x-amz-restore`
 * header says, and which tier a class takes. No I/O, so every rule is unit-tested.
 */

export type Tier = 'Standard' | 'Bulk' | 'Expedited';
export const TIERS: readonly Tier[] = ['Standard', 'Bulk', 'Expedited'];

/** The archive an object is in, as far as restores go; `none` = readable without a restore. */
export type ArchiveClass = 'none' | 'GLACIER' | 'DEEP_ARCHIVE' | 'IT_ARCHIVE' | 'IT_DEEP_ARCHIVE';

export function archiveClass(o: { storageClass?: string; archiveStatus?: string }): ArchiveClass {
  // Intelligent-Tiering objects in an archive tier say so in ArchiveStatus, not StorageClass.
  if (o.archiveStatus === 'ARCHIVE_ACCESS') return 'IT_ARCHIVE';
  if (o.archiveStatus === 'DEEP_ARCHIVE_ACCESS') return 'IT_DEEP_ARCHIVE';
  if (o.storageClass === 'GLACIER') return 'GLACIER';
  if (o.storageClass === 'DEEP_ARCHIVE') return 'DEEP_ARCHIVE';
  // STANDARD, *_IA, GLACIER_IR, INTELLIGENT_TIERING's frequent/infrequent tiers, REDUCED_REDUNDANCY
  return 'none';
}

/** Intelligent-Tiering's archive tiers refuse `Days` (400); Glacier classes require it. */
export function takesDays(c: ArchiveClass): boolean {
  return c === 'GLACIER' || c === 'DEEP_ARCHIVE';
}

/** Expedited retrieval exists for Glacier Flexible Retrieval only among the classes we meet. */
export function tierAllowed(c: ArchiveClass, tier: Tier): boolean {
  return tier !== 'Expedited' || c === 'GLACIER' || c === 'IT_ARCHIVE';
}

export type RestoreState =
  | { state: 'readable' }
  | { state: 'ready'; expiry?: Date }
  | { state: 'in progress' }
  | { state: 'not requested' };

/**
 * `x-amz-restore` is absent (never requested, or the restored copy expired: S3 cannot tell them
 * apart), `ongoing-request="true"`, or `ongoing-request="false", expiry-date="<HTTP date>"`.
 */
export function restoreState(o: {
  storageClass?: string;
  archiveStatus?: string;
  restore?: string;
}): RestoreState {
  const header = o.restore ?? '';
  if (/ongoing-request="true"/.test(header)) return { state: 'in progress' };
  if (/ongoing-request="false"/.test(header)) {
    const m = /expiry-date="([^"]+)"/.exec(header);
    const expiry = m ? new Date(m[1]!) : undefined;
    return expiry && !Number.isNaN(expiry.getTime())
      ? { state: 'ready', expiry }
      : { state: 'ready' };
  }
  if (archiveClass(o) === 'none') return { state: 'readable' };
  return { state: 'not requested' };
}

export function isReadable(s: RestoreState): boolean {
  return s.state === 'readable' || s.state === 'ready';
}

export function describeState(s: RestoreState): string {
  switch (s.state) {
    case 'readable':
      return 'readable now';
    case 'ready':
      return s.expiry ? `ready until ${s.expiry.toISOString()}` : 'ready';
    case 'in progress':
      return 'restore in progress';
    case 'not requested':
      return 'not requested (or its restore expired)';
  }
}
