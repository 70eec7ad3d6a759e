#!/usr/bin/python
# cairn.storage.device: a device of an SDS, through cairn device add|remove.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: device
short_description: A device of a Cairn SDS
description:
  - Adds (C(cairn device add --sds NAME --device PATH)) or removes
    (C(cairn device remove --sds NAME --device PATH)) a device, after reading
    C(cairn --json device list).
  - A device that is there in another pool than C(pool) fails the task (a
    device does not move between pools).
  - In check mode, an SDS that is not there yet (an earlier task would add
    it) is no failure; the device is reported as a change, with a warning.
version_added: "0.1.0"
options:
  sds:
    description: The SDS's name.
    type: str
    required: true
  path:
    description: The device's path on the SDS's host.
    type: str
    required: true
  pool:
    description: The pool it goes to (C(--pool)); the CLI's default if not set.
    type: str
  force:
    description: With C(state=absent), remove it without draining it first (C(--force)).
    type: bool
    default: false
  state:
    description: C(present) adds it if missing; C(absent) removes it if there.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment: cairn.storage.cairn
author: Cairn developers
'''

EXAMPLES = r'''
- name: A second NVMe on st1
  cairn.storage.device:
    sds: st1
    path: /dev/nvme1n1
    pool: fast
'''

RETURN = r'''
device:
  description: The device as C(cairn --json device list) shows it (none once absent).
  returned: success
  type: dict
  sample: {"id": 4, "path": "/dev/nvme1n1", "pool": "fast", "capacity": 1073741824, "failed": false}
commands:
  description: The changing cairn commands run (or that would run, in check mode).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cairn.storage.plugins.module_utils.cairn_cli import (
    CairnCLI, argument_spec)


def find(cli, module):
    p = module.params
    for sds in cli.run('device', 'list') or []:
        if sds.get('name') == p['sds']:
            for d in sds.get('devices', []):
                if d.get('path') == p['path']:
                    return True, d
            return True, None
    return False, None


def main():
    module = AnsibleModule(argument_spec=argument_spec(
        sds=dict(type='str', required=True),
        path=dict(type='str', required=True),
        pool=dict(type='str'),
        force=dict(type='bool', default=False),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
    ), supports_check_mode=True)
    cli = CairnCLI(module)
    p = module.params
    sds_there, dev = find(cli, module)
    if p['state'] == 'absent':
        if dev is None or dev.get('removing'):  # gone, or being drained away
            cli.exit(False, device=dev)
        cli.change('device', 'remove', '--sds', p['sds'], '--device', p['path'],
                   *(['--force'] if p['force'] else []))
        cli.exit(True, device=None)
    if not sds_there:
        if not module.check_mode:
            module.fail_json(msg="no SDS named '%s'" % p['sds'])
        module.warn("check mode: no SDS named '%s'; the device would be added once it is "
                    "there" % p['sds'])  # an earlier task of the play may add it
    if dev is not None:
        if p['pool'] and dev.get('pool') != p['pool']:
            module.fail_json(msg="device %s of SDS '%s' is in pool '%s', not '%s'"
                             % (p['path'], p['sds'], dev.get('pool'), p['pool']), device=dev)
        cli.exit(False, device=dev)
    cli.change('device', 'add', '--sds', p['sds'], '--device', p['path'],
               *(['--pool', p['pool']] if p['pool'] else []))
    if not module.check_mode:
        dev = find(cli, module)[1]
    cli.exit(True, device=dev or {'path': p['path']})


if __name__ == '__main__':
    main()
