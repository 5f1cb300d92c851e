"""Declarative channel provisioning: the channels a file describes, created, started and stopped to match it.

>>> from sigma_async.apply import apply, load_desired
>>> report = await apply(client, load_desired("channels.toml"), state="channels.state.json")
>>> report.ok, report.in_doubt

``load_desired`` reads and checks the file, ``plan`` is the pure planner (file, state and what the server said
in; actions out), and ``apply`` reads the server, plans and carries the plan out. ``sigma-async apply`` is a thin
command on top. The API has no "list channels", so apply keeps a state file: each name's channel id, and a create
that was sent with no recorded answer stays "in doubt" until a person has looked, so it never makes a duplicate.
"""

from ._plan import Action, Gone, Observation, Plan, Seen, Unreadable, plan
from ._run import ApplyReport, ItemResult, apply
from ._spec import DesiredChannel, Problem, SpecFileError, load_desired, parse_desired
from ._state import ApplyState, Entry, StateError, StateFile, default_state_path

__all__ = [
    "Action",
    "ApplyReport",
    "ApplyState",
    "DesiredChannel",
    "Entry",
    "Gone",
    "ItemResult",
    "Observation",
    "Plan",
    "Problem",
    "Seen",
    "SpecFileError",
    "StateError",
    "StateFile",
    "Unreadable",
    "apply",
    "default_state_path",
    "load_desired",
    "parse_desired",
    "plan",
]
