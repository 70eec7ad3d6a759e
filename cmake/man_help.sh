#!/bin/sh
# What help2man reads of a binary (cmake/packaging.cmake): BINARY --help or
# --version with stderr (where the usage goes), and a blank line before each
# line indented by two spaces, so that every entry of a list (an option, a
# command of the CLI without a help text) is a paragraph of its own:
# help2man runs on lines of the same indent into one paragraph.
bin=$1
shift
"$bin" "$@" 2>&1 | sed '/^  [^ ]/{x;p;x;}'
