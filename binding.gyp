{
  "targets": [
    {
      "target_name": "imgbackup_gzip",
      "sources": ["native/gzip_member.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "libraries": ["-l:libdeflate.a"]
    }
  ]
}
