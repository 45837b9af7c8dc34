"""How visionkit reads and writes the YAML of a config: YAML 1.2's numbers
(:class:`ConfigLoader`), written back so that they read back the same (:func:`dump_yaml`),
and the text each number, boolean or date was read from (:func:`load_with_texts`), which a
key declared as text keeps (:func:`visionkit.config.key_types.kept_texts`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import IO, Any

import yaml

_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
#: The tags of the values a plain scalar's text is read as, besides text and null.
READ_TAGS = {_INT, _FLOAT, "tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp"}


class ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2's numbers, as JSON has them: ``1e-3``, ``1e5`` and
    ``1.0e5`` are floats, and ``10:00:00:00`` is text. PyYAML follows YAML 1.1, where a float
    needs a dot and a signed exponent (``1e-3`` was the text ``'1e-3'``, which reached an
    argument no schema types, such as ``model.backbone.kwargs``, as a string) and digits
    joined by colons are a number in base 60 (``max_time: 10:00:00:00``, ten days, was
    2160000). Digits grouped by ``_`` are numbers where YAML 1.1 reads them so (``1_000``,
    ``1_000.5``); YAML 1.2 reads no ``_``, so an exponent without a dot takes none
    (``1_0e1`` is text). Leading zeros are decimal, as in YAML 1.2 (``seed: 010`` is 10,
    where YAML 1.1 read octal 8); YAML 1.2's ``0o17`` is octal. Everything else is
    ``yaml.safe_load``'s.

    >>> load_yaml("{lr: 1e-3, max_time: 10:00:00:00, x: 1_0e1, seed: 010}")
    {'lr': 0.001, 'max_time': '10:00:00:00', 'x': '1_0e1', 'seed': 10}
    """

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        """An int's text as YAML 1.2 reads it: ``010`` is 10 (decimal), ``0o17`` octal;
        ``0x``, ``0b`` and ``_`` as YAML 1.1 reads them."""
        text = str(self.construct_scalar(node)).replace("_", "")
        digits = text.lstrip("+-")
        if digits[:2] in ("0x", "0b", "0o"):
            value = int(digits[2:], {"x": 16, "b": 2, "o": 8}[digits[1]])
            return -value if text.startswith("-") else value
        return int(text)  # int() reads leading zeros as decimal


#: What a scalar of each tag must be; anything else is a YAML error naming the file and line.
_EXPECTED = {
    _INT: "an integer",
    _FLOAT: "a number",
    "tag:yaml.org,2002:bool": "true or false",
    "tag:yaml.org,2002:timestamp": "a date (2024-01-31) or a time (2024-01-31 10:00:00)",
}


def _checked(construct: Callable[[Any, yaml.Node], Any]) -> Callable[[Any, yaml.Node], Any]:
    """``construct`` raising PyYAML's ``ConstructorError`` (shown with the file and line as a
    config error) for a scalar its tag cannot read: ``seed: !!int abc`` (or ``!!int 0x``,
    ``!!bool maybe``, ``2024-13-01``) was a ``ValueError`` traceback from inside PyYAML."""

    def constructed(loader: Any, node: yaml.Node) -> Any:
        try:
            return construct(loader, node)
        except (ValueError, KeyError, AttributeError, OverflowError):
            plain = node.style is None  # a tag of its own, or what its text resolves to
            implicit = plain and loader.resolve(yaml.ScalarNode, node.value, (True, False))
            advice = (
                ": write it in quotes to give text"
                if implicit == node.tag
                else f", as its tag !!{node.tag.rsplit(':', 1)[-1]} asks"
            )
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not {_EXPECTED[node.tag]}{advice}", node.start_mark
            ) from None

    return constructed


for _tag, _construct in (
    (_INT, ConfigLoader.construct_yaml_int),
    (_FLOAT, yaml.SafeLoader.construct_yaml_float),
    ("tag:yaml.org,2002:bool", yaml.SafeLoader.construct_yaml_bool),
    ("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_timestamp),
):
    ConfigLoader.add_constructor(_tag, _checked(_construct))


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(  # YAML 1.1's, less base 60; leading zeros decimal (1.2)
    _INT,
    re.compile(  # a prefix needs a digit after it: "0x_" is text, not int("", 16)'s error
        r"^[-+]?(?:0b_*[01][01_]*|0o_*[0-7][0-7_]*|[0-9][0-9_]*|0x_*[0-9a-fA-F][0-9a-fA-F_]*)$"
    ),
    list("-+0123456789"),
)
ConfigLoader.add_implicit_resolver(  # YAML 1.1's (less base 60) and YAML 1.2's core schema's
    _FLOAT,
    re.compile(
        r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?"  # 1.5, 1_000.5, 1.0e5, 1.
        r"|[-+]?[0-9]+[eE][-+]?[0-9]+"  # 1e-3, 1e5, 0e0 (YAML 1.2: no "_")
        r"|[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?"  # .5, -.5 (YAML 1.2), .5e3
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


class ConfigDumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that quotes every string :class:`ConfigLoader` or
    ``yaml.safe_load`` would read as something else (PyYAML quotes a string its resolvers
    read as another tag): ``'1e-3'`` is written in quotes, as YAML 1.1 writes it bare, which
    visionkit read back as the number 0.001; ``'10:30'`` stays quoted for YAML 1.1 readers.

    >>> yaml.dump({"name": "1e-3", "lr": 0.001}, Dumper=ConfigDumper, sort_keys=False)
    "name: '1e-3'\\nlr: 0.001\\n"
    """


ConfigDumper.yaml_implicit_resolvers = {
    first: [
        *ConfigLoader.yaml_implicit_resolvers.get(first, []),
        *yaml.SafeLoader.yaml_implicit_resolvers.get(first, []),
    ]
    for first in {*ConfigLoader.yaml_implicit_resolvers, *yaml.SafeLoader.yaml_implicit_resolvers}
}


_YAML_1_1 = yaml.SafeLoader("")  # its resolver: what yaml.safe_load reads a plain text as


def text_in_yaml_1_1(text: str) -> bool:
    """Whether ``yaml.safe_load`` (YAML 1.1, as visionkit read configs before
    :class:`ConfigLoader`, and as ``yaml.safe_dump`` wrote them) reads the plain scalar
    ``text`` as text: ``1e-3`` (written bare for the run ``'1e-3'``), unlike ``0.001``.

    >>> text_in_yaml_1_1("1e-3"), text_in_yaml_1_1("0.001")
    (True, False)
    """
    return _YAML_1_1.resolve(yaml.ScalarNode, text, (True, False)) == "tag:yaml.org,2002:str"


def load_yaml(text: str) -> Any:
    """``text`` read as a config file is read (:class:`ConfigLoader`)."""
    loader = ConfigLoader(text)  # a SafeLoader: plain data only (yaml.load's own steps)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def dump_yaml(data: Any) -> str:
    """``data`` as YAML that :func:`load_yaml` (and ``yaml.safe_load``) read back as it is."""
    return yaml.dump(data, Dumper=ConfigDumper, sort_keys=False, default_flow_style=None)


def load_with_texts(
    text: str | IO[str], check: Callable[[yaml.Node], None] | None = None
) -> tuple[Any, dict[tuple[Any, ...], str | None]]:
    """``text`` (or a stream) read as :func:`load_yaml` reads it, and :func:`scalar_texts` of
    it; ``check`` sees the composed document before it is constructed (and may raise).

    >>> load_with_texts("[1e5, 'a']")
    ([100000.0, 'a'], {(0,): '1e5', (1,): None})
    """
    loader = ConfigLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and check is not None:
            check(node)
        data = loader.construct_document(node) if node is not None else None
        return data, scalar_texts(node) if node is not None else {}
    finally:
        loader.dispose()


def scalar_texts(root: yaml.Node) -> dict[tuple[Any, ...], str | None]:
    """The key path of each scalar of a constructed document (``<<:`` merges flattened, as
    the constructor leaves the nodes), → the text a number, boolean or date was read from
    (``"1e5"``), ``None`` for any other scalar (text, null, quoted or tagged values). Keys
    that are not text, and an alias to a node that contains it, are passed over."""
    texts: dict[tuple[Any, ...], str | None] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...], above: frozenset[int]) -> None:
        if id(node) in above:  # a recursive alias
            return
        above = above | {id(node)}
        if isinstance(node, yaml.ScalarNode):
            texts[path] = node.value if node.style is None and node.tag in READ_TAGS else None
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i), above)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:  # a later key wins, as the constructor reads them
                if isinstance(key, yaml.ScalarNode) and key.tag == "tag:yaml.org,2002:str":
                    walk(value, (*path, key.value), above)

    walk(root, (), frozenset())
    return texts
