#!/usr/bin/env bash
# The users' restore runbook (SPEC.md "Restore", issue 13) for archives made by aws_backup.sh,
# fanned out per plate with GNU parallel as the archive runbook is:
#
#   bench/old_restore.sh --plates CSV --project_name P --batch_id B --bucket DEST \
#     --cold_bucket COLD --tmpdir DIR --max_procs N --endpoint_url URL --log_dir DIR
#
# Per plate (one GNU parallel job), for each of its two tarballs X: `aws s3 cp` X.tar.gz and X.md5
# down into TMPDIR/T/, `md5sum` of the download `diff`ed with X.md5, `tar xvzf`; then one
# `aws s3 sync` of the extracted T/ tree up to s3://DEST/projects/ (the tarball's member paths are
# the keys with their leading `projects/` replaced by `T/`), and `rm -rf` of the plate's download.
# --bucket is where the tree goes back: the live bucket in the runbook, a fresh bucket in the bench.
# Left out, since the bench's server holds no Glacier objects: `aws s3api restore-object` per
# tarball and the polling of `head-object` until the restore is done.
set -euo pipefail

# shellcheck source=bench/workflow_args.sh
source "$(dirname "$0")/workflow_args.sh"
parse_workflow_args old_restore.sh "$@"
set_plate_args

if [ "$mode" = run ]; then
  mkdir -p "$log_dir"
  exec parallel --will-cite \
    -a "$plates" \
    --header ".*\n" \
    -C "," \
    --keep-order \
    --max-procs "$max_procs" \
    --eta \
    --joblog "$log_dir/restore.log" \
    --results "$log_dir/restore" \
    --files \
    bash "$0" plate "${plate_args[@]}"
fi

# ---- one plate ----

tag=${project_name}_${batch_id}_${plate_id}
cold=s3://${cold_bucket}/imaging_analysis/${project_name}/plates

cd "$tmpdir"
mkdir -p "$tag"
cd "$tag"
for group in images_illum_analysis backend; do
  x=${tag}_${group}
  aws s3 cp "$cold/$x.tar.gz" "$x.tar.gz"
  aws s3 cp "$cold/$x.md5" "$x.md5"
  md5sum "$x.tar.gz" >"$x.md5.local"
  if ! diff "$x.md5" "$x.md5.local"; then
    echo "$x.tar.gz: md5 differs from $x.md5" >&2
    exit 1
  fi
  tar xvzf "$x.tar.gz"
done
aws s3 sync "$tag/" "s3://${bucket}/projects/"
cd ..
rm -rf "$tag"
