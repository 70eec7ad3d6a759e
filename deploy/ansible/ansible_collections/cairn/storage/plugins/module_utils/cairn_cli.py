# The one helper of the cairn.storage modules: the cairn CLI run with --json.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

COMMON_ARGS = dict(
    cli_path=dict(type='str', default='cairn'),
    mdm=dict(type='list', elements='str'),
    credentials=dict(type='path'),
    mdm_timeout=dict(type='int'),
)

_UNITS = {'': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40, 'P': 1 << 50}


def argument_spec(**specific):
    spec = dict(COMMON_ARGS)
    spec.update(specific)
    return spec


def parse_size(module, value):
    """Bytes of a SIZE as the CLI takes it: a number with an optional K, M,
    G, T or P suffix (powers of 1024)."""
    m = re.match(r'^\s*(\d+)\s*([KMGTP]?)i?B?\s*$', str(value), re.IGNORECASE)
    if not m:
        module.fail_json(msg="size %r: a number of bytes with an optional K, M, G, T or P "
                         "suffix (powers of 1024)" % (value,))
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def cli_message(stderr, rc):
    """The CLI's message: its stderr without the usage text that follows a
    bad invocation."""
    lines = []
    for line in (stderr or '').splitlines():
        if line.startswith('usage:'):
            break
        if line.strip():
            lines.append(line.strip())
    return ' '.join(lines) or 'cairn exited with status %d' % rc


class CairnCLI(object):
    def __init__(self, module):
        self.module = module
        p = module.params
        self.base = [p['cli_path']]
        if p.get('mdm'):
            self.base += ['--mdm', ','.join(p['mdm'])]
        if p.get('credentials'):
            self.base += ['--credentials', p['credentials']]
        if p.get('mdm_timeout') is not None:
            self.base += ['--mdm-timeout', str(p['mdm_timeout'])]
        self.base.append('--json')
        self.commands = []  # the changes run (or that would run, in check mode)

    def run(self, *args, check=True):
        """The command's parsed JSON output; on failure (check) the task
        fails with the CLI's message, else (rc, message) is returned."""
        argv = self.base + [str(a) for a in args]
        try:
            rc, out, err = self.module.run_command(argv)
        except OSError as e:
            self.module.fail_json(msg='cannot run %s: %s' % (self.base[0], e))
        if rc != 0:
            msg = cli_message(err, rc)
            if check:
                self.module.fail_json(msg=msg, rc=rc, cmd=' '.join(argv[len(self.base):]))
            return None, msg
        try:
            data = json.loads(out) if out.strip() else None
        except ValueError:
            self.module.fail_json(msg='cairn %s: output is not JSON: %s'
                                  % (' '.join(args), out[:200]))
        return (data if check else (data, None))

    def change(self, *args):
        """A command that changes the cluster: recorded, and run unless in
        check mode."""
        self.commands.append(' '.join(['cairn'] + [str(a) for a in args]))
        if not self.module.check_mode:
            self.run(*args)

    def find(self, list_args, key, value):
        """The element of `cairn --json <list_args>` whose key is value, or None."""
        for obj in self.run(*list_args) or []:
            if obj.get(key) == value:
                return obj
        return None

    def exit(self, changed, **result):
        self.module.exit_json(changed=changed, commands=self.commands, **result)
