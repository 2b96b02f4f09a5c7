"""A second tool for the tests: ``calculator`` (arithmetic on numbers), and a method offering it next
to ``retrieve_safety_rules``. Importing this module registers both (as a plug-in module would)."""

from __future__ import annotations

import ast
import operator

from ascl_ray.rollout.method import Method, register_method
from ascl_ray.tools import EpisodeContext, Tool, ToolEnv, ToolError, register_tool

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_UN = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def evaluate(expression: str) -> float:
    """+ - * / // % and parentheses over numbers; anything else is a ToolError."""
    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            return _BIN[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UN:
            return _UN[type(node.op)](ev(node.operand))
        raise ToolError(f"unsupported expression element {type(node).__name__}")

    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as e:
        raise ToolError(f"argument 'expression' is not arithmetic ({e.msg})") from None
    try:
        return ev(tree)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None


class CalculatorTool(Tool):
    name = "calculator"
    description = "Evaluate an arithmetic expression."
    purpose = "compute arithmetic"
    text_hint = "an arithmetic expression"

    @property
    def parameters(self) -> dict:
        return {"type": "object",
                "properties": {"expression": {"type": "string", "description": "e.g. (2 + 3) * 4",
                                              "maxLength": 200}},
                "required": ["expression"], "additionalProperties": False}

    def examples(self) -> list[dict]:
        return [{"expression": "6*7"}, {"expression": "(1 + 2) / 4"}]

    def usage_note(self) -> str:
        return "The result is returned to you. "

    def execute(self, arguments: dict, episode: EpisodeContext) -> str:
        value = evaluate(arguments["expression"])
        return str(int(value)) if float(value).is_integer() else repr(value)


@register_tool("calculator")
def calculator(env: ToolEnv) -> CalculatorTool:
    return CalculatorTool()


@register_method("ascl_calc")
class AsclWithCalculator(Method):
    """ASCL plus a calculator: two tools in one wire format."""

    name = "ascl_calc"
    tools = ("retrieve_safety_rules", "calculator")
