#!/usr/bin/python
# cairn.storage.mapping: a volume mapped to an SDC, through cairn volume map|unmap.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mapping
short_description: A Cairn volume mapped to an SDC
description:
  - Maps (C(cairn volume map NAME --sdc SDC)) or unmaps (C(cairn volume unmap))
    a volume, after reading C(cairn --json volume show NAME).
  - A mapping that exists with the other C(read_only) is not changed in place
    (that would cut the client's I/O); the task fails, unmap it first.
  - In check mode, a volume that does not exist yet (an earlier task would
    create it) is reported as a change, with a warning.
version_added: "0.1.0"
options:
  volume:
    description: The volume's name.
    type: str
    required: true
  sdc:
    description: The SDC's name (as C(cairn sdc list) shows it).
    type: str
    required: true
  read_only:
    description: Map it read-only (C(--read-only)).
    type: bool
    default: false
  access:
    description:
      - A read-write mapping's access mode (C(--access), docs/attach.md).
        C(single-writer) lets one SDC at a time have the volume open
        read-write; C(shared) lets several write at once, for cluster file
        systems that coordinate their writers themselves. Every read-write
        mapping of a volume has the same mode. Ignored for a read-only one.
      - A mapping with the other mode fails (unmap it first).
    type: str
    choices: [single-writer, shared]
    default: single-writer
  state:
    description: C(present) maps it if not mapped; C(absent) unmaps it if mapped.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment: cairn.storage.cairn
author: Cairn developers
'''

EXAMPLES = r'''
- name: db1 on the SDC of host db-a
  cairn.storage.mapping:
    volume: db1
    sdc: db-a
'''

RETURN = r'''
volume:
  description: The volume as C(cairn --json volume show) shows it.
  returned: success
  type: dict
  sample: {"name": "db1", "mapped_to": [{"sdc": "db-a", "read_only": false}]}
commands:
  description: The changing cairn commands run (or that would run, in check mode).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cairn.storage.plugins.module_utils.cairn_cli import (
    CairnCLI, argument_spec)


def main():
    module = AnsibleModule(argument_spec=argument_spec(
        volume=dict(type='str', required=True),
        sdc=dict(type='str', required=True),
        read_only=dict(type='bool', default=False),
        access=dict(type='str', choices=['single-writer', 'shared'], default='single-writer'),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
    ), supports_check_mode=True)
    cli = CairnCLI(module)
    p = module.params
    vol, msg = cli.run('volume', 'show', p['volume'], check=False)
    if vol is None:
        if msg.startswith('cairn: no volume named'):
            if p['state'] == 'absent':
                cli.exit(False, volume=None)  # no volume: mapped nowhere
            if module.check_mode:  # an earlier task of the play may create it
                module.warn("check mode: %s; it would be mapped once created" % msg)
                cli.change('volume', 'map', p['volume'], '--sdc', p['sdc'],
                           *(['--read-only'] if p['read_only'] else []))
                cli.exit(True, volume=None)
        module.fail_json(msg=msg)
    m = [x for x in vol.get('mapped_to', []) if x.get('sdc') == p['sdc']]
    if p['state'] == 'absent':
        if not m:
            cli.exit(False, volume=vol)
        cli.change('volume', 'unmap', p['volume'], '--sdc', p['sdc'])
    else:
        if m:
            if bool(m[0].get('read_only')) != p['read_only']:
                module.fail_json(msg="volume '%s' is mapped %s to SDC '%s'; unmap it first to "
                                 "map it %s" % (p['volume'],
                                                'read-only' if m[0].get('read_only') else 'read-write',
                                                p['sdc'],
                                                'read-only' if p['read_only'] else 'read-write'),
                                 volume=vol)
            if not p['read_only'] and m[0].get('access', 'single-writer') != p['access']:
                module.fail_json(msg="volume '%s' is mapped %s to SDC '%s'; unmap it first to map it "
                                 "%s" % (p['volume'], m[0].get('access'), p['sdc'], p['access']),
                                 volume=vol)
            cli.exit(False, volume=vol)
        args = ['volume', 'map', p['volume'], '--sdc', p['sdc']]
        if p['read_only']:
            args.append('--read-only')
        elif p['access'] != 'single-writer':
            args += ['--access', p['access']]
        cli.change(*args)
    if not module.check_mode:
        vol = cli.run('volume', 'show', p['volume'])
    cli.exit(True, volume=vol)


if __name__ == '__main__':
    main()
