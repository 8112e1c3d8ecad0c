"""A tiny stack language and its two interpreters: pure Python (host) and JAX (device, jittable).

A program is a string of one-character instructions over a stack of integers, run on one input
integer x; the output is the value on top of the stack when the program ends.

    x         push the input x
    0 … 9     push the digit
    + - *     pop b, pop a, push a+b / a−b / a·b
    / %       pop b, pop a, push ⌊a/b⌋ / a mod b (Python's floor convention); b = 0 crashes
    d         duplicate the top value
    s         swap the two top values
    [ … ]     while loop: at "[" jump past the matching "]" if the top is 0, at "]" jump back
              after the matching "[" if the top is not 0 (both only read the top)

Examples: "x2*1+" is 2x+1, "xd*" is x², "x[1-]" counts x down to 0 (and never ends for x < 0).

Every run ends in one status; anything but ``OK`` is a crash, and a crashed run has no output:

    OK             the program ended with a value on the stack
    SYNTAX         an instruction outside the language (checked before running)
    BRACKETS       unbalanced "[" / "]" (checked before running)
    UNDERFLOW      an instruction needed more values than the stack holds
    OVERFLOW       a push onto a full stack (``max_stack`` values)
    DIV_ZERO       "/" or "%" by zero
    RANGE          a result outside [−max_value, max_value]
    STEP_LIMIT     more than ``max_steps`` instructions executed (an endless loop)
    EMPTY          the program ended with an empty stack
    NO_END         (token programs only) no EOS among the valid tokens: the program never ended

``run(text, x)`` (Python) and ``run_tokens(language, tokens_t, valid_t, x_n)`` (JAX) implement the
same semantics, status for status and value for value (values stay within int32: operands are
bounded by ``max_value`` ≤ 46340 before every product); ``describe`` turns a status into the error
observation a program's author would read. No model output is ever evaluated by Python itself:
both interpreters only dispatch on the instruction characters / token ids above.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from polrl.tasks.tokenizer import CharTokenizer

INSTRUCTIONS = "x0123456789+-*/%ds[]"
_X, _ADD, _SUB, _MUL, _DIV, _MOD, _DUP, _SWAP, _OPEN, _CLOSE = 0, 11, 12, 13, 14, 15, 16, 17, 18, 19

OK, SYNTAX, BRACKETS, UNDERFLOW, OVERFLOW, DIV_ZERO, RANGE, STEP_LIMIT, EMPTY, NO_END = range(10)
_RUNNING = -1
STATUS_NAMES = ("ok", "syntax error", "unbalanced brackets", "stack underflow", "stack overflow",
                "division by zero", "value out of range", "step limit exceeded", "empty stack at end",
                "no end of program")


@dataclasses.dataclass(frozen=True)
class Limits:
    """The interpreter's resource limits (the same for both interpreters)."""

    max_steps: int = 64
    max_stack: int = 8
    max_value: int = 9999

    def __post_init__(self):
        for field, low, high in (("max_steps", 1, 10_000), ("max_stack", 2, 64), ("max_value", 9, 46_340)):
            value = getattr(self, field)
            if not low <= value <= high:
                raise ValueError(f"Limits: {field}={value!r}; it must be an int in [{low}, {high}]")


class Result(NamedTuple):
    """One run: ``status`` (``OK`` … ``NO_END``), ``value`` (the output; 0 unless OK) and ``pc``
    (the instruction index the status refers to: the crashing instruction, the first unknown
    character, the first unmatched bracket; the program's length for OK / EMPTY / STEP_LIMIT)."""

    status: int
    value: int
    pc: int


def describe(result: Result, program: str, limits: Limits = Limits()) -> str:
    """The observation of a run: ``"ok: 7"`` or ``"error: <what> …"`` naming where it happened."""
    status, value, pc = result
    if status == OK:
        return f"ok: {value}"
    where = f" at instruction {pc} ({program[pc]!r})" if 0 <= pc < len(program) else ""
    if status == STEP_LIMIT:
        return f"error: step limit exceeded (more than {limits.max_steps} steps)"
    if status == OVERFLOW:
        return f"error: stack overflow (more than {limits.max_stack} values){where}"
    if status == RANGE:
        return f"error: value out of range (beyond ±{limits.max_value}){where}"
    if status == NO_END:
        return "error: no end of program (no EOS token)"
    return f"error: {STATUS_NAMES[status]}{where}"


def _match_brackets(program: str) -> tuple[dict[int, int], int | None]:
    """(jump table {open: close, close: open}, the first unmatched bracket or None)."""
    jumps, opens = {}, []
    for i, c in enumerate(program):
        if c == "[":
            opens.append(i)
        elif c == "]":
            if not opens:
                return jumps, i
            j = opens.pop()
            jumps[i], jumps[j] = j, i
    return jumps, (opens[0] if opens else None)


def run(program: str, x: int, limits: Limits = Limits()) -> Result:
    """Runs ``program`` (instruction characters) on input ``x``, in pure Python."""
    for i, c in enumerate(program):
        if c not in INSTRUCTIONS:
            return Result(SYNTAX, 0, i)
    jumps, unmatched = _match_brackets(program)
    if unmatched is not None:
        return Result(BRACKETS, 0, unmatched)
    stack: list[int] = []
    pc = steps = 0
    need = {"+": 2, "-": 2, "*": 2, "/": 2, "%": 2, "s": 2, "d": 1, "[": 1, "]": 1}
    while pc < len(program):
        if steps == limits.max_steps:
            return Result(STEP_LIMIT, 0, len(program))
        steps += 1
        c = program[pc]
        if len(stack) < need.get(c, 0):
            return Result(UNDERFLOW, 0, pc)
        if c in "x0123456789d":
            if len(stack) == limits.max_stack:
                return Result(OVERFLOW, 0, pc)
            value = x if c == "x" else stack[-1] if c == "d" else int(c)
            if abs(value) > limits.max_value:
                return Result(RANGE, 0, pc)
            stack.append(value)
        elif c == "s":
            stack[-1], stack[-2] = stack[-2], stack[-1]
        elif c == "[":
            pc = jumps[pc] if stack[-1] == 0 else pc
        elif c == "]":
            pc = jumps[pc] if stack[-1] != 0 else pc
        else:
            b, a = stack.pop(), stack.pop()
            if c in "/%" and b == 0:
                return Result(DIV_ZERO, 0, pc)
            value = a + b if c == "+" else a - b if c == "-" else a * b if c == "*" else a // b if c == "/" else a % b
            if abs(value) > limits.max_value:
                return Result(RANGE, 0, pc)
            stack.append(value)
        pc += 1
    if not stack:
        return Result(EMPTY, 0, len(program))
    return Result(OK, stack[-1], len(program))


@dataclasses.dataclass(frozen=True)
class Language:
    """The instruction set on a tokenizer's ids, for ``run_tokens``: ``table[id]`` is the
    instruction's index in ``INSTRUCTIONS`` (−1 for an id that is no instruction)."""

    tokenizer: CharTokenizer = CharTokenizer()
    limits: Limits = Limits()

    @property
    def table(self) -> np.ndarray:
        table = np.full(self.tokenizer.vocab_size, -1, np.int32)
        for k, c in enumerate(INSTRUCTIONS):
            table[self.tokenizer.encode(c)[0]] = k
        return table


def _structure(code_t, valid_t, eos_id_t):
    """Per program: (length, static status (RUNNING, SYNTAX, BRACKETS or NO_END), its pc, jump_t)."""
    t = code_t.shape[0]
    col = jnp.arange(t)
    eos_t = valid_t & eos_id_t
    has_end = eos_t.any()
    length = jnp.where(has_end, jnp.argmax(eos_t), t)
    inside_t = col < length
    bad_t = inside_t & ((code_t < 0) | ~valid_t)

    def scan_brackets(carry, i):
        opens, depth, first_bad, partner = carry
        c, live = code_t[i], inside_t[i]
        is_open, is_close = live & (c == _OPEN), live & (c == _CLOSE)
        stray = is_close & (depth == 0)
        first_bad = jnp.where(stray & (first_bad < 0), i, first_bad)
        matched = is_close & (depth > 0)
        top = opens[jnp.maximum(depth - 1, 0)]
        partner = partner.at[i].set(jnp.where(matched, top, partner[i]))
        partner = partner.at[top].set(jnp.where(matched, i, partner[top]))
        depth = depth - matched.astype(depth.dtype)
        opens = opens.at[depth].set(jnp.where(is_open, i, opens[depth]))
        depth = depth + is_open.astype(depth.dtype)
        return (opens, depth, first_bad, partner), None

    init = (jnp.zeros(t, jnp.int32), jnp.int32(0), jnp.int32(-1), jnp.zeros(t, jnp.int32))
    (opens, depth, first_bad, partner), _ = jax.lax.scan(scan_brackets, init, col)
    unmatched = jnp.where(first_bad >= 0, first_bad, jnp.where(depth > 0, opens[0], -1))
    status = jnp.where(~has_end, NO_END, jnp.where(bad_t.any(), SYNTAX, jnp.where(unmatched >= 0, BRACKETS, _RUNNING)))
    pc = jnp.where(~has_end, length, jnp.where(bad_t.any(), jnp.argmax(bad_t), jnp.maximum(unmatched, 0)))
    return length, status, pc, partner


def _execute(code_t, length, status0, pc0, partner_t, x, limits: Limits):
    """One program on one input: (status, value, pc), the loop of ``run`` in lax."""
    d = limits.max_stack
    slots = jnp.arange(d)
    need_table = jnp.asarray([0] * 11 + [2, 2, 2, 2, 2, 1, 2, 1, 1], jnp.int32)

    def body(_, s):
        pc, sp, stack, status, steps = s
        running = status == _RUNNING
        at_end = pc >= length
        finish = running & at_end
        status = jnp.where(finish, jnp.where(sp >= 1, OK, EMPTY), status)
        limit = running & ~at_end & (steps >= limits.max_steps)
        status = jnp.where(limit, STEP_LIMIT, status)
        live = running & ~at_end & ~limit
        c = code_t[jnp.clip(pc, 0, code_t.shape[0] - 1)]
        top, below = stack[jnp.maximum(sp - 1, 0)], stack[jnp.maximum(sp - 2, 0)]
        underflow = sp < need_table[jnp.maximum(c, 0)]
        pushes = (c <= 10) | (c == _DUP)
        overflow = ~underflow & pushes & (sp >= d)
        binary = (c >= _ADD) & (c <= _MOD)
        div_zero = ~underflow & ((c == _DIV) | (c == _MOD)) & (top == 0)
        safe = jnp.where(top == 0, 1, top)
        result = jnp.select(
            [c == _ADD, c == _SUB, c == _MUL, c == _DIV],
            [below + top, below - top, below * top, jnp.floor_divide(below, safe)],
            jnp.mod(below, safe),
        )
        pushed = jnp.where(c == _X, x, jnp.where(c == _DUP, top, c - 1))
        new_top = jnp.where(binary, result, pushed)
        out_of_range = ~underflow & ~div_zero & (binary | pushes) & (jnp.abs(new_top) > limits.max_value)
        crash = jnp.select([underflow, overflow, div_zero, out_of_range], [UNDERFLOW, OVERFLOW, DIV_ZERO, RANGE], _RUNNING)
        status = jnp.where(live, crash, status)
        ok = live & (crash == _RUNNING)
        write = jnp.where(binary, sp - 2, sp)  # binary ops overwrite the lower operand
        swapped = jnp.where(slots == sp - 1, below, jnp.where(slots == sp - 2, top, stack))
        new_stack = jnp.where(c == _SWAP, swapped, jnp.where(slots == write, new_top, stack))
        is_jump = (c == _OPEN) | (c == _CLOSE)
        stack = jnp.where(ok & ~is_jump, new_stack, stack)
        sp = jnp.where(ok, sp + jnp.where(pushes, 1, jnp.where(binary, -1, 0)), sp)
        jump = ((c == _OPEN) & (top == 0)) | ((c == _CLOSE) & (top != 0))
        next_pc = jnp.where(jump, partner_t[jnp.clip(pc, 0, code_t.shape[0] - 1)], pc) + 1
        pc = jnp.where(ok, next_pc, pc)
        steps = steps + live.astype(steps.dtype)
        return pc, sp, stack, status, steps

    start = (jnp.int32(0), jnp.int32(0), jnp.zeros(d, jnp.int32), status0, jnp.int32(0))
    pc, sp, stack, status, _ = jax.lax.fori_loop(0, limits.max_steps + 1, body, start)
    value = jnp.where(status == OK, stack[jnp.maximum(sp - 1, 0)], 0)
    ended = (status == OK) | (status == EMPTY) | (status == STEP_LIMIT)
    pc = jnp.where(status0 != _RUNNING, pc0, jnp.where(ended, length, pc))
    return status, value, pc


def run_tokens(language: Language, tokens_t: jax.Array, valid_t: jax.Array, x_n: jax.Array):
    """Runs one token program on each input of ``x_n`` (jittable; vmap it over programs).

    ``tokens_t`` are token ids, ``valid_t`` marks the real ones; the program is every valid token
    before the first valid EOS (a pad or other invalid token before it is a syntax error).
    Returns int32 ``(status_n, value_n, pc_n)``, equal to ``run(program, x)`` for each x (and
    ``NO_END`` when there is no EOS).
    """
    code_t = jnp.asarray(language.table)[tokens_t]
    length, status0, pc0, partner_t = _structure(code_t, valid_t.astype(bool), tokens_t == language.tokenizer.eos_id)
    one = lambda x: _execute(code_t, length, status0, pc0, partner_t, x, language.limits)
    return jax.vmap(one)(jnp.asarray(x_n, jnp.int32))
