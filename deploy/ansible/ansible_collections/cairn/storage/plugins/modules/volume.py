#!/usr/bin/python
# cairn.storage.volume: a volume, through cairn volume create|grow|remove.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: volume
short_description: A Cairn volume
description:
  - Creates (C(cairn volume create)), grows (C(cairn volume grow)) or removes
    (C(cairn volume remove)) a volume, after reading C(cairn --json volume list).
  - A volume can only grow; asking for a smaller size than it has fails, and so
    does asking for another pool or provisioning than it has.
version_added: "0.1.0"
options:
  name:
    description: The volume's name.
    type: str
    required: true
  size:
    description:
      - Its size, in bytes or with a K, M, G, T or P suffix (powers of 1024), a
        multiple of 4 KiB. Required with C(state=present).
    type: str
  pool:
    description: The pool (C(--pool)) at creation; the CLI's default pool if not set.
    type: str
  thick:
    description: Thick provisioning (C(--thick)) at creation.
    type: bool
    default: false
  state:
    description: C(present) creates or grows it; C(absent) removes it if there.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment: cairn.storage.cairn
author: Cairn developers
'''

EXAMPLES = r'''
- name: A 100 GiB volume in pool fast
  cairn.storage.volume:
    name: db1
    size: 100G
    pool: fast
'''

RETURN = r'''
volume:
  description: The volume as C(cairn --json volume list) shows it (none once absent).
  returned: success
  type: dict
  sample: {"id": 11, "name": "db1", "pool": "fast", "size": 107374182400, "thick": false, "mapped_to": []}
commands:
  description: The changing cairn commands run (or that would run, in check mode).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cairn.storage.plugins.module_utils.cairn_cli import (
    CairnCLI, argument_spec, parse_size)

LIST = ('volume', 'list')


def main():
    module = AnsibleModule(argument_spec=argument_spec(
        name=dict(type='str', required=True),
        size=dict(type='str'),
        pool=dict(type='str'),
        thick=dict(type='bool', default=False),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
    ), required_if=[('state', 'present', ['size'])], supports_check_mode=True)
    cli = CairnCLI(module)
    p = module.params
    vol = cli.find(LIST, 'name', p['name'])
    if p['state'] == 'absent':
        if vol is None:
            cli.exit(False, volume=None)
        cli.change('volume', 'remove', p['name'])
        cli.exit(True, volume=None)
    size = parse_size(module, p['size'])
    if vol is None:
        args = ['volume', 'create', p['name'], '--size', size]
        if p['pool']:
            args += ['--pool', p['pool']]
        if p['thick']:
            args.append('--thick')
        cli.change(*args)
        vol = None if module.check_mode else cli.find(LIST, 'name', p['name'])
        cli.exit(True, volume=vol or {'name': p['name'], 'size': size})
    if p['pool'] and vol['pool'] != p['pool']:
        module.fail_json(msg="volume '%s' is in pool '%s', not '%s'; a volume cannot move "
                         "to another pool" % (p['name'], vol['pool'], p['pool']), volume=vol)
    if bool(vol['thick']) != p['thick']:
        module.fail_json(msg="volume '%s' is %s provisioned; that cannot be changed"
                         % (p['name'], 'thick' if vol['thick'] else 'thin'), volume=vol)
    if size < vol['size']:
        module.fail_json(msg="volume '%s' has %d bytes; a volume cannot shrink (to %d)"
                         % (p['name'], vol['size'], size), volume=vol)
    if size == vol['size']:
        cli.exit(False, volume=vol)
    cli.change('volume', 'grow', p['name'], '--size', size)
    if not module.check_mode:
        vol = cli.find(LIST, 'name', p['name'])
    cli.exit(True, volume=vol)


if __name__ == '__main__':
    main()
