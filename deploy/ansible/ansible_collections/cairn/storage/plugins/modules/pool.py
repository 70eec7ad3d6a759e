#!/usr/bin/python
# cairn.storage.pool: a storage pool, through cairn pool create|set.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pool
short_description: A Cairn storage pool
description:
  - Creates a pool with C(cairn pool create NAME) and sets its overcommit with
    C(cairn pool set NAME --overcommit PCT), after reading C(cairn --json pool list).
  - The CLI has no command that removes a pool, so there is no C(state=absent).
  - C(copies) cannot change once the pool exists (the task fails if asked to);
    C(pgs) is only used when creating it.
version_added: "0.1.0"
options:
  name:
    description: The pool's name.
    type: str
    required: true
  copies:
    description: Copies of each extent (C(--copies)); the CLI's default if not set.
    type: int
    choices: [2, 3]
  pgs:
    description: Placement groups (C(--pgs)) at creation; the CLI's default if not set.
    type: int
  overcommit:
    description: Thin provisioning limit in percent of usable capacity (C(--overcommit)).
    type: int
extends_documentation_fragment: cairn.storage.cairn
author: Cairn developers
'''

EXAMPLES = r'''
- name: A 3-copy pool
  cairn.storage.pool:
    name: fast
    copies: 3
    pgs: 256
    overcommit: 200
'''

RETURN = r'''
pool:
  description: The pool as C(cairn --json pool list) shows it.
  returned: success
  type: dict
  sample: {"id": 2, "name": "fast", "copies": 3, "pg_count": 256, "overcommit_pct": 200, "health": "ok"}
commands:
  description: The changing cairn commands run (or that would run, in check mode).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cairn.storage.plugins.module_utils.cairn_cli import (
    CairnCLI, argument_spec)

LIST = ('pool', 'list')


def main():
    module = AnsibleModule(argument_spec=argument_spec(
        name=dict(type='str', required=True),
        copies=dict(type='int', choices=[2, 3]),
        pgs=dict(type='int'),
        overcommit=dict(type='int'),
    ), supports_check_mode=True)
    cli = CairnCLI(module)
    p = module.params
    pool = cli.find(LIST, 'name', p['name'])
    if pool is None:
        args = ['pool', 'create', p['name']]
        for opt, flag in (('copies', '--copies'), ('pgs', '--pgs'), ('overcommit', '--overcommit')):
            if p[opt] is not None:
                args += [flag, p[opt]]
        cli.change(*args)
        pool = None if module.check_mode else cli.find(LIST, 'name', p['name'])
        cli.exit(True, pool=pool or {'name': p['name']})
    if p['copies'] is not None and pool['copies'] != p['copies']:
        module.fail_json(msg="pool '%s' has %d copies; the number of copies of an existing "
                         "pool cannot be changed" % (p['name'], pool['copies']), pool=pool)
    changed = False
    if p['overcommit'] is not None and pool['overcommit_pct'] != p['overcommit']:
        cli.change('pool', 'set', p['name'], '--overcommit', p['overcommit'])
        changed = True
        if not module.check_mode:
            pool = cli.find(LIST, 'name', p['name'])
    cli.exit(changed, pool=pool)


if __name__ == '__main__':
    main()
