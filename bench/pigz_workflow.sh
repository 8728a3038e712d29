#!/usr/bin/env bash
# What an expert would hand-roll instead of aws_backup.sh: per plate, `aws s3 sync` the four
# sources down, `tar -c | pigz -p2 -6` each of the two tarballs, `aws s3 cp` them up, rm. No
# listings, md5 or ETag checks. Plates are fanned out with GNU parallel like the old workflow.
#
#   bench/pigz_workflow.sh --plates CSV --project_name P --batch_id B --bucket LIVE \
#     --cold_bucket COLD --tmpdir DIR --max_procs N --endpoint_url URL --log_dir DIR
set -euo pipefail

# shellcheck source=bench/workflow_args.sh
source "$(dirname "$0")/workflow_args.sh"
parse_workflow_args pigz_workflow.sh "$@"
set_plate_args

if [ "$mode" = run ]; then
  mkdir -p "$log_dir"
  exec parallel --will-cite \
    -a "$plates" \
    --header ".*\n" \
    -C "," \
    --max-procs "$max_procs" \
    --joblog "$log_dir/pigz.log" \
    --results "$log_dir/pigz" \
    --files \
    bash "$0" plate "${plate_args[@]}"
fi


src=s3://${bucket}/projects/${project_name}
dst=s3://${cold_bucket}/imaging_analysis/${project_name}/plates
tag=${project_name}_${batch_id}_${plate_id}
P=${project_name}

cd "$tmpdir"
mkdir -p "$tag"
aws s3 sync --only-show-errors "$src/${batch_id}/images/${plate_id_full}/" "$tag/$P/${batch_id}/images/${plate_id_full}/"
aws s3 sync --only-show-errors "$src/${batch_id}/illum/${plate_id}/" "$tag/$P/${batch_id}/illum/${plate_id}/"
aws s3 sync --only-show-errors "$src/workspace/analysis/${batch_id}/${plate_id}/" "$tag/$P/workspace/analysis/${batch_id}/${plate_id}/"
aws s3 sync --only-show-errors "$src/workspace/backend/${batch_id}/${plate_id}/" "$tag/$P/workspace/backend/${batch_id}/${plate_id}/"

tar -c "$tag/$P/${batch_id}/images/${plate_id_full}" "$tag/$P/${batch_id}/illum/${plate_id}" \
  "$tag/$P/workspace/analysis/${batch_id}/${plate_id}" |
  pigz -p2 -6 >"${tag}_images_illum_analysis.tar.gz"
tar -c "$tag/$P/workspace/backend/${batch_id}/${plate_id}" |
  pigz -p2 -6 >"${tag}_backend.tar.gz"
rm -rf "$tag"

aws s3 cp --only-show-errors "${tag}_images_illum_analysis.tar.gz" "$dst/${tag}_images_illum_analysis.tar.gz"
aws s3 cp --only-show-errors "${tag}_backend.tar.gz" "$dst/${tag}_backend.tar.gz"
rm -f "${tag}_images_illum_analysis.tar.gz" "${tag}_backend.tar.gz"
