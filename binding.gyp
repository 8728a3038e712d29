{
  "variables": {
    "with_isal%": "<!(echo '#include <isa-l/igzip_lib.h>' | cc -E - >/dev/null 2>&1 && echo 1 || echo 0)"
  },
  "targets": [
    {
      "target_name": "imgbackup_gzip",
      "sources": ["native/gzip_member.c", "native/md5_pair.c", "native/md5_async.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "libraries": ["-l:libdeflate.a"],
      "conditions": [["with_isal==1", { "defines": ["WITH_ISAL"], "libraries": ["-lisal"] }]]
    }
  ]
}
