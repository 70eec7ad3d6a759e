#!/usr/bin/python
# cairn.storage.mdm: a member of the MDM cluster, through cairn mdm add|remove.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mdm
short_description: A member of the Cairn MDM (metadata manager) cluster
description:
  - Adds (C(cairn mdm add --id N --addr A --raft-addr R)) or removes
    (C(cairn mdm remove N)) an MDM, after reading C(cairn --json mdm list).
  - The MDM to add must be running, started with C(--join); C(mdm add)
    returns once it is a voter. The CLI refuses a removal that would lose
    quorum, and the task fails with its message.
  - An MDM that is there with other addresses fails the task (remove it first).
version_added: "0.1.0"
options:
  id:
    description: The MDM's id (its C(--id)).
    type: int
    required: true
  addr:
    description: Its client address HOST:PORT (C(--addr)). Required to add it.
    type: str
  raft_addr:
    description: Its Raft address HOST:PORT (C(--raft-addr)). Required to add it.
    type: str
  state:
    description: C(present) adds it if missing; C(absent) removes it if there.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment: cairn.storage.cairn
author: Cairn developers
'''

EXAMPLES = r'''
- name: MDM 2 joins
  cairn.storage.mdm:
    id: 2
    addr: 10.0.0.2:7000
    raft_addr: 10.0.0.2:7001
    mdm: [10.0.0.1:7000]
'''

RETURN = r'''
mdm:
  description: The MDM as C(cairn --json mdm list) shows it (none once absent).
  returned: success
  type: dict
  sample: {"id": 2, "addr": "10.0.0.2:7000", "raft_addr": "10.0.0.2:7001", "member": "voter", "role": "follower"}
commands:
  description: The changing cairn commands run (or that would run, in check mode).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cairn.storage.plugins.module_utils.cairn_cli import (
    CairnCLI, argument_spec)

LIST = ('mdm', 'list')


def main():
    module = AnsibleModule(argument_spec=argument_spec(
        id=dict(type='int', required=True),
        addr=dict(type='str'),
        raft_addr=dict(type='str'),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
    ), required_if=[('state', 'present', ['addr', 'raft_addr'])], supports_check_mode=True)
    cli = CairnCLI(module)
    p = module.params
    mdm = cli.find(LIST, 'id', p['id'])
    if p['state'] == 'absent':
        if mdm is None:
            cli.exit(False, mdm=None)
        cli.change('mdm', 'remove', p['id'])
        cli.exit(True, mdm=None)
    if mdm is not None:
        for key in ('addr', 'raft_addr'):
            if mdm.get(key) != p[key]:
                module.fail_json(msg="MDM %d has %s %s, not %s; remove it first to change it"
                                 % (p['id'], key, mdm.get(key), p[key]), mdm=mdm)
        cli.exit(False, mdm=mdm)
    cli.change('mdm', 'add', '--id', p['id'], '--addr', p['addr'], '--raft-addr', p['raft_addr'])
    if not module.check_mode:
        mdm = cli.find(LIST, 'id', p['id'])
    cli.exit(True, mdm=mdm or {'id': p['id'], 'addr': p['addr'], 'raft_addr': p['raft_addr']})


if __name__ == '__main__':
    main()
