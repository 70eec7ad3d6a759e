#!/usr/bin/python
# cairn.storage.sds: an SDS, through cairn sds add|remove|maintenance and device add.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: sds
short_description: A Cairn SDS (storage server) in the cluster
description:
  - Adds (C(cairn sds add)) or removes (C(cairn sds remove)) an SDS, and takes
    it in or out of maintenance (C(cairn sds maintenance enter|exit)), after
    reading C(cairn --json sds list). The cairn-sds daemon must be running
    for C(sds add) to succeed.
  - For an SDS that exists, devices of C(devices) it lacks are added with
    C(cairn device add); devices it has but C(devices) omits are left alone
    (see M(cairn.storage.device) to remove one). Its address and fault set
    cannot change; the task fails if they differ.
version_added: "0.1.0"
options:
  name:
    description: The SDS's name (its C(--name)).
    type: str
    required: true
  addr:
    description: Its HOST:PORT (C(--addr)). Required to add it.
    type: str
  devices:
    description: Device paths (C(--device), repeated). At least one to add it.
    type: list
    elements: str
    default: []
  fault_set:
    description: Its fault set (C(--fault-set)), which must exist.
    type: str
  pool:
    description: The pool its devices go to (C(--pool)).
    type: str
  maintenance:
    description: C(true) enters maintenance, C(false) exits it; unset leaves it as it is.
    type: bool
  force:
    description: With C(state=absent), forget it now and rebuild its copies (C(--force)).
    type: bool
    default: false
  state:
    description:
      - C(present) adds it if missing; C(absent) removes it if there and not
        already being removed (drained).
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment: cairn.storage.cairn
author: Cairn developers
'''

EXAMPLES = r'''
- name: The SDS of host st1
  cairn.storage.sds:
    name: st1
    addr: 10.0.0.11:7100
    devices: [/dev/nvme0n1, /dev/nvme1n1]
    fault_set: rack1
    pool: fast
'''

RETURN = r'''
sds:
  description: The SDS as C(cairn --json sds list) shows it (none once gone; with
    C(removing) true while it is drained).
  returned: success
  type: dict
  sample: {"name": "st1", "addr": "10.0.0.11:7100", "fault_set": "rack1", "state": "up", "devices": []}
commands:
  description: The changing cairn commands run (or that would run, in check mode).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cairn.storage.plugins.module_utils.cairn_cli import (
    CairnCLI, argument_spec)

LIST = ('sds', 'list')


def main():
    module = AnsibleModule(argument_spec=argument_spec(
        name=dict(type='str', required=True),
        addr=dict(type='str'),
        devices=dict(type='list', elements='str', default=[]),
        fault_set=dict(type='str'),
        pool=dict(type='str'),
        maintenance=dict(type='bool'),
        force=dict(type='bool', default=False),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
    ), supports_check_mode=True)
    cli = CairnCLI(module)
    p = module.params
    name = p['name']
    sds = cli.find(LIST, 'name', name)
    if p['state'] == 'absent':
        if sds is None or sds.get('removing'):  # gone, or being drained away
            cli.exit(False, sds=sds)
        cli.change('sds', 'remove', name, *(['--force'] if p['force'] else []))
        cli.exit(True, sds=None)
    pool = ['--pool', p['pool']] if p['pool'] else []
    changed = False
    if sds is None:
        if not p['addr'] or not p['devices']:
            module.fail_json(msg="SDS '%s' is not in the cluster; adding it needs addr and "
                             "at least one of devices" % name)
        args = ['sds', 'add', '--name', name, '--addr', p['addr']]
        for d in p['devices']:
            args += ['--device', d]
        if p['fault_set']:
            args += ['--fault-set', p['fault_set']]
        cli.change(*(args + pool))
        changed = True
        if module.check_mode:
            cli.exit(True, sds={'name': name, 'addr': p['addr']})
        sds = cli.find(LIST, 'name', name)
    else:
        if p['addr'] and sds['addr'] != p['addr']:
            module.fail_json(msg="SDS '%s' has address %s, not %s; remove and add it again to "
                             "change it" % (name, sds['addr'], p['addr']), sds=sds)
        if p['fault_set'] is not None and sds.get('fault_set', '') != p['fault_set']:
            module.fail_json(msg="SDS '%s' is in fault set '%s', not '%s'; that cannot be "
                             "changed" % (name, sds.get('fault_set', ''), p['fault_set']), sds=sds)
        have = set(d['path'] for d in sds.get('devices', []))
        missing = [d for d in p['devices'] if d not in have]
        if missing:
            args = ['device', 'add', '--sds', name]
            for d in missing:
                args += ['--device', d]
            cli.change(*(args + pool))
            changed = True
    if p['maintenance'] is not None and (sds.get('state') == 'maintenance') != p['maintenance']:
        cli.change('sds', 'maintenance', 'enter' if p['maintenance'] else 'exit', name)
        changed = True
    if changed and not module.check_mode:
        sds = cli.find(LIST, 'name', name)
    cli.exit(changed, sds=sds)


if __name__ == '__main__':
    main()
