#!/usr/bin/env bash
# A faithful replica of the workflow imgbackup replaces (SPEC.md, seed/aws_backup.md): the
# per-plate aws_backup.sh fanned out with GNU parallel exactly as the runbook does it.
#
#   bench/old_workflow.sh --plates CSV --project_name P --batch_id B --bucket LIVE \
#     --cold_bucket COLD --tmpdir DIR --max_procs N --endpoint_url URL --log_dir DIR
#
# Per plate (the `plate` mode below, one GNU parallel job each), as aws_backup.sh does it:
#   aws s3 ls --recursive of the four sources (without the trailing "/", as the old script did)
#   -> normalized listing with the old awk/tr/cut/sed/sort pipeline
#   -> aws s3 sync of each source into TMPDIR/T/P/...
#   -> per tarball: tar -czf (gzip -6, one core), tar -tvzf for the tar listing, md5sum,
#      aws s3 cp up, the multipart ETag recomputed from the file (s3md5), aws s3api head-object
#      to compare it, .md5 and .etag up, rm
#   -> listings and delete script up, rm -rf of the downloaded tree.
# Differences from the original, none of which changes the work done: every aws call gets
# --endpoint-url; the tar-listing pipeline has the "|" the original lost after `cut`; the ETag uses
# the aws CLI's part-size rule (8 MiB doubled until <= 10,000 parts) instead of a fixed 8 MiB; the
# .etag file that SPEC.md lists is written too; parallel gets --will-cite; the remote ETag may also
# equal the tarball's plain md5 (s3rver's answer for a multipart upload).
set -u

# shellcheck source=bench/workflow_args.sh
source "$(dirname "$0")/workflow_args.sh"
parse_workflow_args old_workflow.sh "$@"
set_plate_args

if [ "$mode" = run ]; then
  # The runbook's archive step.
  mkdir -p "$log_dir"
  exec parallel --will-cite \
    -a "$plates" \
    --header ".*\n" \
    -C "," \
    --keep-order \
    --max-procs "$max_procs" \
    --eta \
    --joblog "$log_dir/backup.log" \
    --results "$log_dir/backup" \
    --files \
    bash "$0" plate "${plate_args[@]}"
fi

# ---- one plate: aws_backup.sh ----

# s3md5: the ETag S3 gives a file the aws CLI uploads (multipart above 8 MiB).
etag_of_file() {
  local file=$1 size part parts
  size=$(stat -c %s "$file")
  part=8388608
  while (((size + part - 1) / part > 10000)); do part=$((part * 2)); done
  parts=$(((size + part - 1) / part))
  echo "$(split -b "$part" --filter='md5sum | cut -d" " -f1' "$file" | xxd -r -p | md5sum | cut -d" " -f1)-${parts}"
}

s3_prefix=s3://${bucket}/projects/${project_name}
s3_backup_prefix=s3://${bucket}/projects/${project_name}/workspace/backup
s3_cold_prefix=s3://${cold_bucket}/imaging_analysis/${project_name}/plates
s3_cold_prefix_key=imaging_analysis/${project_name}/plates
plate_archive_tag=${project_name}_${batch_id}_${plate_id}

trap 'exit' ERR

cd "$tmpdir"
mkdir -p "${plate_archive_tag}"
cd "${plate_archive_tag}"
mkdir -p "${project_name}/${batch_id}/images/${plate_id_full}"
mkdir -p "${project_name}/${batch_id}/illum/${plate_id}"
mkdir -p "${project_name}/workspace/analysis/${batch_id}/${plate_id}"
mkdir -p "${project_name}/workspace/backend/${batch_id}/${plate_id}"
cd "${project_name}"

file_listing_s3=../../${plate_archive_tag}_file_listing_s3.txt
file_listing_untrimmed_s3=../../${plate_archive_tag}_file_listing_untrimmed_s3.txt
rm -rf "${file_listing_untrimmed_s3}"
touch "${file_listing_untrimmed_s3}"

# aws s3 ls returns 1 if the prefix doesn't exist
trap '' ERR
aws s3 ls --recursive "${s3_prefix}/${batch_id}/images/${plate_id_full}" >>"${file_listing_untrimmed_s3}"
aws s3 ls --recursive "${s3_prefix}/${batch_id}/illum/${plate_id}" >>"${file_listing_untrimmed_s3}"
aws s3 ls --recursive "${s3_prefix}/workspace/analysis/${batch_id}/${plate_id}" >>"${file_listing_untrimmed_s3}"
aws s3 ls --recursive "${s3_prefix}/workspace/backend/${batch_id}/${plate_id}" >>"${file_listing_untrimmed_s3}"
trap 'exit' ERR

awk -F/ '{ if($NF != "") print }' "${file_listing_untrimmed_s3}" |
  tr -s " " |
  cut -d" " -f3,4 |
  awk '{ print $2 "\t" $1}' |
  sed s,projects/,,g |
  sort >"${file_listing_s3}"

aws s3 sync "${s3_prefix}/${batch_id}/images/${plate_id_full}" "${batch_id}/images/${plate_id_full}"
aws s3 sync "${s3_prefix}/${batch_id}/illum/${plate_id}" "${batch_id}/illum/${plate_id}"
aws s3 sync "${s3_prefix}/workspace/analysis/${batch_id}/${plate_id}" "workspace/analysis/${batch_id}/${plate_id}"
aws s3 sync "${s3_prefix}/workspace/backend/${batch_id}/${plate_id}" "workspace/backend/${batch_id}/${plate_id}"

cd ../../

process_tar_file() {
  local tar_file=$1 file_listing_tar etag_local etag_remote
  file_listing_tar=${tar_file}_file_listing_tar.txt

  tar -tvzf "${tar_file}.tar.gz" |
    awk -F/ '{ if($NF != "") print }' |
    tr -s " " |
    cut -f3,6 -d" " |
    awk '{ print $2 "\t" $1}' |
    sed "s,${plate_archive_tag}/,,g" |
    sort >"${file_listing_tar}"

  md5sum "${tar_file}.tar.gz" >"${tar_file}.md5"

  aws s3 cp "${tar_file}.tar.gz" "${s3_cold_prefix}/${tar_file}.tar.gz"

  size=$(du -b "${tar_file}.tar.gz" | cut -f1)
  if [ "${size}" -le 8388608 ]; then
    etag_local=$(cut -d" " -f1 "${tar_file}.md5")
  else
    etag_local=$(etag_of_file "${tar_file}.tar.gz")
  fi
  etag_remote=$(aws s3api head-object --bucket "${cold_bucket}" --key "${s3_cold_prefix_key}/${tar_file}.tar.gz" | jq '.ETag' - | tr -d '"' | tr -d '\\')
  # s3rver answers the whole object's md5 for a multipart upload (as imgbackup also accepts)
  if [ "$etag_local" != "$etag_remote" ] && [ "$(cut -d" " -f1 "${tar_file}.md5")" != "$etag_remote" ]; then
    echo "Remote and local ETags don't match"
    echo "Remote =" "$etag_remote"
    echo "Local  =" "$etag_local"
    exit 1
  fi

  aws s3 cp "${tar_file}.md5" "${s3_cold_prefix}/${tar_file}.md5"
  echo "$etag_remote" >"${tar_file}.etag"
  aws s3 cp "${tar_file}.etag" "${s3_cold_prefix}/${tar_file}.etag"
  rm -rf "${tar_file}.tar.gz" "${tar_file}.md5" "${tar_file}.etag"
}

tar_file=${plate_archive_tag}_images_illum_analysis
tar -czf "${tar_file}.tar.gz" \
  "${plate_archive_tag}/${project_name}/${batch_id}/images/${plate_id_full}" \
  "${plate_archive_tag}/${project_name}/${batch_id}/illum/${plate_id}" \
  "${plate_archive_tag}/${project_name}/workspace/analysis/${batch_id}/${plate_id}"
process_tar_file "${tar_file}"
file_listing_tar_1=${tar_file}_file_listing_tar.txt

tar_file=${plate_archive_tag}_backend
tar -czf "${tar_file}.tar.gz" \
  "${plate_archive_tag}/${project_name}/workspace/backend/${batch_id}/${plate_id}"
process_tar_file "${tar_file}"
file_listing_tar_2=${tar_file}_file_listing_tar.txt

sort "${file_listing_tar_1}" "${file_listing_tar_2}" >"${plate_archive_tag}_file_listing_tar.txt"
rm "${file_listing_tar_1}" "${file_listing_tar_2}"

aws s3 cp "${plate_archive_tag}_file_listing_tar.txt" "${s3_backup_prefix}/${plate_archive_tag}_file_listing_tar.txt"
rm "${plate_archive_tag}_file_listing_tar.txt"
aws s3 cp "${plate_archive_tag}_file_listing_s3.txt" "${s3_backup_prefix}/${plate_archive_tag}_file_listing_s3.txt"
rm "${plate_archive_tag}_file_listing_s3.txt"
aws s3 cp "${plate_archive_tag}_file_listing_untrimmed_s3.txt" "${s3_cold_prefix}/${plate_archive_tag}_file_listing_untrimmed_s3.txt"
rm "${plate_archive_tag}_file_listing_untrimmed_s3.txt"

rm -rf "${plate_archive_tag}"

delete_s3=${plate_archive_tag}_delete_s3.sh
rm -rf "${delete_s3}"
touch "${delete_s3}"
{
  echo aws s3 rm --recursive "\"${s3_prefix}/${batch_id}/images/${plate_id_full}\""
  echo aws s3 rm --recursive "\"${s3_prefix}/${batch_id}/illum/${plate_id}\""
  echo aws s3 rm --recursive "\"${s3_prefix}/workspace/analysis/${batch_id}/${plate_id}\""
  echo aws s3 rm --recursive "\"${s3_prefix}/workspace/backend/${batch_id}/${plate_id}\""
} >>"${delete_s3}"
aws s3 cp "${delete_s3}" "${s3_backup_prefix}/${delete_s3}"
rm "${delete_s3}"
