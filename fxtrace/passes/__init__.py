"""Graph passes: ``GraphModule -> PassResult(graph_module, modified)``, one per file.

Every pass rewrites the graph of the ``GraphModule`` it is given, in place as fx passes do,
and returns it with ``modified`` telling whether anything changed; none has hidden state and
none ever modifies an object the user owns (their modules, parameters, buffers). Each visits
only ``gm.graph``; :func:`run_passes` applies it to every GraphModule of the tree, records the
``passes`` table and verifies after each pass under ``FXTRACE_VERIFY=1``.

``is_impure`` (in :mod:`.purity`) is the one definition of "has a side effect" that every
pass uses. See ``docs/passes.md``.
"""
from .cse import eliminate_common_subexpressions
from .dce import eliminate_dead_code
from .fold_batchnorm import fold_batchnorm
from .fold_constants import FOLD_NUMEL_LIMIT, fold_constants
from .manager import VERIFY_ENV, count_nodes, pass_name, run_passes
from .purity import is_impure, may_write, mutated_inputs, possibly_mutated
from .result import PassRecord, PassResult
from .verify import verify

__all__ = [
    "PassResult",
    "PassRecord",
    "is_impure",
    "may_write",
    "mutated_inputs",
    "possibly_mutated",
    "eliminate_dead_code",
    "eliminate_common_subexpressions",
    "fold_constants",
    "fold_batchnorm",
    "verify",
    "run_passes",
    "pass_name",
    "count_nodes",
    "DEFAULT_PASSES",
    "FOLD_NUMEL_LIMIT",
    "VERIFY_ENV",
]

#: What fxtrace runs by default. ``fold_batchnorm`` is added only on request.
DEFAULT_PASSES = [
    eliminate_dead_code,
    eliminate_common_subexpressions,
    fold_constants,
    eliminate_dead_code,
]
