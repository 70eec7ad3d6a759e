#!/usr/bin/python
# cairn.storage.sdc: an SDC's approval, through cairn sdc approve.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: sdc
short_description: Approve a Cairn SDC (restricted SDC mode)
description:
  - With C(cairn cluster set --restricted-sdc on) (the default), an SDC that
    registers waits in state C(pending) and no volume can be mapped to it
    until it is approved. This module approves it with C(cairn sdc approve
    NAME), after reading C(cairn --json sdc list).
  - It can wait for the SDC to register first (C(wait)), as an SDC registers
    itself when its daemon first reaches the MDM, so a play that has just
    started C(cairn-sdc) on a host would otherwise race it.
  - An SDC cannot be unapproved or removed with the CLI; there is no
    C(state=absent).
version_added: "0.1.0"
options:
  name:
    description: The SDC's name (its credential's name; C(cairn-sdc --name)).
    type: str
    required: true
  wait:
    description:
      - Seconds to wait for the SDC to register before failing; 0 fails at
        once if it is not in C(cairn sdc list).
    type: int
    default: 60
extends_documentation_fragment: cairn.storage.cairn
author: Cairn developers
'''

EXAMPLES = r'''
- name: Approve the SDC of host db-a once it has registered
  cairn.storage.sdc:
    name: db-a
    wait: 120
    mdm: [10.0.0.1:6611, 10.0.0.2:6611, 10.0.0.3:6611]
    credentials: /etc/cairn/credentials/admin.cred
'''

RETURN = r'''
sdc:
  description: The SDC as C(cairn --json sdc list) shows it.
  returned: success
  type: dict
  sample: {"id": 1, "name": "db-a", "guid": "0b6e...", "state": "approved", "volumes": []}
commands:
  description: The changing cairn commands run (or that would run, in check mode).
  returned: always
  type: list
  elements: str
'''

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cairn.storage.plugins.module_utils.cairn_cli import (
    CairnCLI, argument_spec)

LIST = ('sdc', 'list')


def main():
    module = AnsibleModule(argument_spec=argument_spec(
        name=dict(type='str', required=True),
        wait=dict(type='int', default=60),
    ), supports_check_mode=True)
    cli = CairnCLI(module)
    name = module.params['name']
    deadline = time.monotonic() + max(0, module.params['wait'])
    sdc = cli.find(LIST, 'name', name)
    while sdc is None and time.monotonic() < deadline:
        time.sleep(1)  # polling: the SDC registers when its daemon reaches the MDM
        sdc = cli.find(LIST, 'name', name)
    if sdc is None:
        module.fail_json(msg="SDC '%s' has not registered with the MDM (waited %d s): is "
                         "cairn-sdc running on its host, with a credential issued for that "
                         "name?" % (name, module.params['wait']))
    if sdc.get('state') == 'approved':
        cli.exit(False, sdc=sdc)
    cli.change('sdc', 'approve', name)
    if not module.check_mode:
        sdc = cli.find(LIST, 'name', name)
    cli.exit(True, sdc=sdc)


if __name__ == '__main__':
    main()
