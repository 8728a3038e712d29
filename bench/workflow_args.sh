# Sourced by old_workflow.sh and pigz_workflow.sh: the flags bench.ts passes both baselines.
# parse_workflow_args sets mode (run: fan plates out under GNU parallel; plate: one plate) and one
# variable per flag. Usage: parse_workflow_args SCRIPT_NAME "$@"
parse_workflow_args() {
  local me=$1
  shift
  mode=run
  if [ "${1:-}" = plate ]; then
    mode=plate
    shift
  fi
  while [[ $# -gt 0 ]]; do
    case $1 in
      --plates) plates=$2 ;;
      --project_name) project_name=$2 ;;
      --batch_id) batch_id=$2 ;;
      --plate_id) plate_id=$2 ;;
      --plate_id_full) plate_id_full=$2 ;;
      --bucket) bucket=$2 ;;
      --cold_bucket) cold_bucket=$2 ;;
      --tmpdir) tmpdir=$2 ;;
      --max_procs) max_procs=$2 ;;
      --endpoint_url) endpoint_url=$2 ;;
      --log_dir) log_dir=$2 ;;
      *)
        echo "$me: unknown option $1" >&2
        exit 2
        ;;
    esac
    shift 2
  done
}

# The arguments GNU parallel passes each plate's run ({1}, {2}: the CSV's two columns), in
# plate_args. Call after parse_workflow_args.
set_plate_args() {
  plate_args=(
    --project_name "$project_name"
    --batch_id "$batch_id"
    --plate_id "{1}"
    --plate_id_full "{2}"
    --bucket "$bucket"
    --cold_bucket "$cold_bucket"
    --tmpdir "$tmpdir"
    --endpoint_url "$endpoint_url"
  )
}

# Every aws call goes to the bench's local S3 server.
aws() { command aws --endpoint-url "$endpoint_url" "$@"; }
