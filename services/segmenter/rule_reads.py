"""What a segment rule reads: the variables and fields its expression selects.

Pure decision code. Read from the syntax tree CEL's grammar parses an expression to
(cel-python's parser, on lark); rules are compiled and evaluated by cel_expr_python.
The fields a rule reads are checked against the context's records (rules_file), flagged
when protected and withheld from tickets (rules.RuleSet): an expression whose reads
cannot be told is Unreadable, never taken as reading nothing.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator

from celpy.celparser import CELParseError, CELParser
from lark import Token, Tree

from services.segmenter import rules

# A field selected by its name in quotes (`customer['age_years']`) is read as with a dot;
# a key that is no name (`customer.attributes['a b']`) leaves the map it selects from read
# whole.
_FIELD_NAME = re.compile(r"[A-Za-z_]\w*")
# The macros that bind a variable, named by their first argument, in the arguments after
# it (`l.exists(v, v > 1)`): those cel_expr_python expands.
_MACROS = frozenset({"all", "exists", "exists_one", "filter", "map"})
_TEXTS = frozenset({"STRING_LIT", "MLSTRING_LIT"})
# The grammar's rules that are their one part when they have one: an operation's, with no
# operator, and parentheses.
_WRAPPERS = frozenset({"expr", "conditionalor", "conditionaland", "relation", "addition",
                       "multiplication", "unary", "member", "primary", "paren_expr"})
# What an Unreadable error quotes of the expression, from where the parser stopped.
_QUOTED = 24
# A node of the syntax tree cel-python's parser makes: a rule's part, or a word of it.
_Node = Tree[Token] | Token


class Unreadable(ValueError):
    """An expression cel_expr_python compiles whose reads cannot be told: cel-python's
    grammar does not take all that cel_expr_python's does. The message says where and
    what to write instead."""


def referenced_paths(expression: str) -> tuple[str, ...]:
    """The variables and fields an expression reads, e.g. ('customer.type', 'tier'), in
    the order it first reads them: not those in its text literals or comments, nor the
    methods it calls, nor a macro's variables named alike (`l.exists(customer, ...)`).

    Unreadable when cel-python's parser does not take the expression."""
    return tuple(dict.fromkeys(_reads(_parse(expression))))


# One parse at a time: CELParser.parse keeps the text it parses on the parser, shared, and
# lark's lexers build their scanners on their first use. The parses run on worker threads
# (config_files.parse_off_the_loop), which the GIL lets run one at a time anyway.
_PARSING = threading.Lock()


def _parse(expression: str) -> _Node:
    try:
        with _PARSING:
            return _parser().parse(expression)
    except CELParseError as exc:
        raise Unreadable(_unparsed(expression, exc.line, exc.column)) from None


@functools.cache
def _parser() -> CELParser:
    # Built once, when the first rule is read (lark builds its tables in about half a second).
    return CELParser()


def _unparsed(expression: str, line: int | None, column: int | None) -> str:
    where = "does not take its condition"
    if line is not None and column is not None:
        near = expression.split("\n")[line - 1][column - 1:][:_QUOTED]
        where = f"stops at line {line}, column {column} of its condition ({near!r})"
    return (f"the fields this rule reads cannot be told: the grammar they are read with"
            f" {where}. Write a list or map without a comma after its last item"
            " (`['NL', 'BE']`, not `['NL', 'BE',]`) and a field by its name without"
            " backquotes (`customer.gender`, not customer.`gender`)")


def _reads(tree: _Node) -> Iterator[str]:
    """The paths `tree` reads, in the order it reads them. Walked with a stack of its own,
    not by recursion: a chain of `&&` however long compiles (CEL balances it), while this
    grammar nests it a level a term."""
    # Each node with the names of the macro variables in scope there.
    stack: list[tuple[_Node, frozenset[str]]] = [(tree, frozenset())]
    while stack:
        node, local = stack.pop()
        node = _inside(node)
        if isinstance(node, Token):
            continue
        path = _path(node, local)
        if path is not None:
            yield path
            continue
        parts = [(child, local) for child in node.children]
        if node.data == "member_object":  # `Type{field: value}`: the type is no read
            parts = parts[1:]
        elif node.data == "member_dot_arg" and len(parts) == 3 and node.children[1] in _MACROS:
            target, _, arguments = node.children  # an exprlist
            variable, *scoped = arguments.children if isinstance(arguments, Tree) else [arguments]
            name = _inside(variable)
            if isinstance(name, Tree) and name.data == "ident":
                within = local | {str(name.children[0])}
                parts = [(target, local), *((argument, within) for argument in scoped)]
        stack.extend(reversed(parts))


def _path(node: _Node, local: frozenset[str]) -> str | None:
    """The path `node` is, when it is a variable of the root scope or a field selected of
    one (`has()` tests one); None when it is something else. `local` names the macro
    variables in scope there."""
    fields: list[str] = []  # from the last selected
    node = _inside(node)
    while isinstance(node, Tree) and node.data in ("member_dot", "member_index"):
        operand, selected = node.children
        field = str(selected) if node.data == "member_dot" else _key_name(selected)
        if field is None:
            return None
        fields.append(field)
        node = _inside(operand)
    if not isinstance(node, Tree) or node.data not in ("ident", "dot_ident"):
        return None
    # CEL's leading dot (`.customer`) names the root scope's variable, whatever a macro
    # calls its own.
    name = str(node.children[0])
    if name not in rules.VARIABLES or (node.data == "ident" and name in local):
        return None
    return ".".join((name, *reversed(fields)))


def _key_name(key: _Node) -> str | None:
    """The field a key in quotes selects (`['age_years']`), None for any other key."""
    key = _inside(key)
    literal = key.children[0] if isinstance(key, Tree) and key.data == "literal" else None
    if not isinstance(literal, Token) or literal.type not in _TEXTS:
        return None
    name = _text(str(literal))
    return name if _FIELD_NAME.fullmatch(name) else None


@functools.lru_cache(maxsize=1024)
def _text(literal: str) -> str:
    # The text cel_expr_python makes of a text literal, whatever its quotes and escapes
    # (raw or not, `\X61` as `\x61`): the key a rule selects is the one it evaluates.
    value = rules.ENVIRONMENT.compile(literal).eval(rules.ENVIRONMENT.Activation({}))
    return str(value.plain_value())


def _inside(node: _Node) -> _Node:
    """What `node` is made of when it only wraps it: `(customer)` is `customer`, as is an
    expression of one operand, with no operator."""
    while (isinstance(node, Tree) and node.data in _WRAPPERS and len(node.children) == 1
           and isinstance(node.children[0], Tree)):
        node = node.children[0]
    return node
