# mgmt/: the CLI (argument parsing).
