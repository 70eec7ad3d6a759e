#!/usr/bin/python
# cairn.storage.info: the cluster's status and object lists (never changes anything).
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: info
short_description: The state of a Cairn cluster
description:
  - Returns C(cairn --json status) and the lists of C(pool list),
    C(fault-set list), C(sds list), C(volume list), C(sdc list) and C(mdm list).
  - Changes nothing.
version_added: "0.1.0"
options:
  gather:
    description: Which of the lists to return (status is always returned).
    type: list
    elements: str
    choices: [pools, fault_sets, sds, volumes, sdcs, mdms]
    default: [pools, fault_sets, sds, volumes, sdcs, mdms]
extends_documentation_fragment: cairn.storage.cairn
author: Cairn developers
'''

EXAMPLES = r'''
- name: The cluster
  cairn.storage.info:
  register: cairn
- ansible.builtin.debug:
    msg: "{{ cairn.volumes | map(attribute='name') | list }}"
'''

RETURN = r'''
status:
  description: C(cairn --json status).
  returned: always
  type: dict
pools:
  description: C(cairn --json pool list).
  returned: when gathered
  type: list
  elements: dict
fault_sets:
  description: C(cairn --json fault-set list).
  returned: when gathered
  type: list
  elements: dict
sds:
  description: C(cairn --json sds list).
  returned: when gathered
  type: list
  elements: dict
volumes:
  description: C(cairn --json volume list).
  returned: when gathered
  type: list
  elements: dict
sdcs:
  description: C(cairn --json sdc list).
  returned: when gathered
  type: list
  elements: dict
mdms:
  description: C(cairn --json mdm list).
  returned: when gathered
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cairn.storage.plugins.module_utils.cairn_cli import (
    CairnCLI, argument_spec)

LISTS = dict(pools=('pool', 'list'), fault_sets=('fault-set', 'list'), sds=('sds', 'list'),
             volumes=('volume', 'list'), sdcs=('sdc', 'list'), mdms=('mdm', 'list'))


def main():
    module = AnsibleModule(argument_spec=argument_spec(
        gather=dict(type='list', elements='str', choices=sorted(LISTS),
                    default=['pools', 'fault_sets', 'sds', 'volumes', 'sdcs', 'mdms']),
    ), supports_check_mode=True)
    cli = CairnCLI(module)
    result = dict(status=cli.run('status'))
    for key in module.params['gather']:
        result[key] = cli.run(*LISTS[key])
    cli.exit(False, **result)


if __name__ == '__main__':
    main()
