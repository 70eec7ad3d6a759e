#!/usr/bin/python
# cairn.storage.fault_set: a fault set, through cairn fault-set add|remove.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: fault_set
short_description: A Cairn fault set (SDSs that may fail together)
description:
  - Adds or removes a fault set with C(cairn fault-set add|remove NAME),
    after reading C(cairn --json fault-set list).
version_added: "0.1.0"
options:
  name:
    description: The fault set's name.
    type: str
    required: true
  state:
    description: C(present) adds it if missing; C(absent) removes it if there.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment: cairn.storage.cairn
author: Cairn developers
'''

EXAMPLES = r'''
- name: Rack 1 is a fault set
  cairn.storage.fault_set:
    name: rack1
    mdm: [10.0.0.1:7000]
    credentials: /etc/cairn/admin.cred
'''

RETURN = r'''
fault_set:
  description: The fault set as C(cairn --json fault-set list) shows it (none once absent).
  returned: success
  type: dict
  sample: {"id": 9, "name": "rack1", "sds_count": 0, "capacity": 0, "sds": []}
commands:
  description: The changing cairn commands run (or that would run, in check mode).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cairn.storage.plugins.module_utils.cairn_cli import (
    CairnCLI, argument_spec)

LIST = ('fault-set', 'list')


def main():
    module = AnsibleModule(argument_spec=argument_spec(
        name=dict(type='str', required=True),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
    ), supports_check_mode=True)
    cli = CairnCLI(module)
    name, state = module.params['name'], module.params['state']
    fs = cli.find(LIST, 'name', name)
    if state == 'present' and fs is None:
        cli.change('fault-set', 'add', name)
        fs = None if module.check_mode else cli.find(LIST, 'name', name)
        cli.exit(True, fault_set=fs or {'name': name})
    if state == 'absent' and fs is not None:
        cli.change('fault-set', 'remove', name)
        cli.exit(True, fault_set=None)
    cli.exit(False, fault_set=fs)


if __name__ == '__main__':
    main()
