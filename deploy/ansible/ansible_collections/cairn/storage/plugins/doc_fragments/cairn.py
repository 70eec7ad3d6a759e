# The options every cairn.storage module shares (plugins/module_utils/cairn_cli.py).


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  cli_path:
    description:
      - The C(cairn) CLI to run (a name looked up in C($PATH), or a path).
    type: str
    default: cairn
  mdm:
    description:
      - The MDM addresses (HOST:PORT), given to the CLI as C(--mdm a,b,c).
      - If not set, the CLI takes them from C($CAIRN_MDM).
    type: list
    elements: str
  credentials:
    description:
      - The credential file (C(--credentials)); an admin one for a change.
      - If not set, the CLI takes it from C($CAIRN_CREDENTIALS).
    type: path
  mdm_timeout:
    description:
      - How long, in seconds, the CLI waits for a leader and its answer (C(--mdm-timeout)).
    type: int
notes:
  - The modules run the C(cairn) CLI on the managed host; a failed command fails
    the task with the CLI's own message.
'''
