"""The run-time type checker the tests install over the suite (see conftest.py): beartype,
with PEP 484's numeric tower, so an int is accepted where a float is annotated."""

from beartype import BeartypeConf, beartype

typechecker = beartype(conf=BeartypeConf(is_pep484_tower=True))
