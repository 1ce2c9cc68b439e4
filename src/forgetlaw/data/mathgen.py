"""A deterministic DM-Mathematics-style generator (question line, answer line).

Twelve problem types (arithmetic, linear equations, composed 'Let x be ...' problems, polynomial
evaluation, derivatives, gcd/lcm, remainders, base conversion, sorting, rounding, primality, 2x2
systems), so the text is far from English and varied enough that small models overfit it only after
several epochs. Document i is a pure function of (seed, i): builds are byte-identical.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator

VARS = "abcdfghjklmnopqrstuvwxyz"
PAIRS_PER_DOCUMENT = 64


def _num(rng: random.Random, lo: int = -12, hi: int = 12, nonzero: bool = False) -> int:
    while True:
        value = rng.randint(lo, hi)
        if value or not nonzero:
            return value


def _paren(value: int) -> str:
    return f"({value})" if value < 0 else str(value)


def _expr(rng: random.Random, depth: int) -> tuple[str, int]:
    if depth == 0:
        value = _num(rng, -20, 20)
        return _paren(value), value
    left, lv = _expr(rng, depth - 1)
    right, rv = _expr(rng, rng.randint(0, depth - 1))
    op = rng.choice("+-*")
    value = lv + rv if op == "+" else lv - rv if op == "-" else lv * rv
    return f"({left} {op} {right})", value


def arithmetic(rng):
    text, value = _expr(rng, rng.randint(1, 3))
    return f"Calculate {text[1:-1]}.", str(value)


def linear(rng):
    x, v = rng.choice(VARS), _num(rng)
    a, c = _num(rng, nonzero=True), _num(rng)
    while c == a:
        c = _num(rng)
    b = _num(rng, -50, 50)
    d = (a - c) * v + b  # a*v + b == c*v + d
    return f"Solve {a}*{x} + {_paren(b)} = {c}*{x} + {_paren(d)} for {x}.", str(v)


def composed(rng):
    let, x = rng.sample(VARS, 2)
    text, value = _expr(rng, 2)
    v = _num(rng)
    a = _num(rng, nonzero=True)
    rhs = a * v + value
    return f"Let {let} be {text[1:-1]}. Solve {a}*{x} + {let} = {rhs} for {x}.", str(v)


def _poly(rng, var: str) -> tuple[list[int], str]:
    coeffs = [_num(rng, -9, 9) for _ in range(rng.randint(2, 4))]
    coeffs[-1] = coeffs[-1] or 1
    return coeffs, _poly_text(coeffs, var)


def _poly_text(coeffs: list[int], var: str) -> str:
    terms = []
    for power in range(len(coeffs) - 1, -1, -1):
        c = coeffs[power]
        if c == 0:
            continue
        body = str(abs(c)) if power == 0 else (f"{abs(c)}*" if abs(c) != 1 else "") + (
            var if power == 1 else f"{var}**{power}")
        terms.append(("-" if c < 0 else "+", body))
    if not terms:
        return "0"
    first_sign, first = terms[0]
    out = ("-" if first_sign == "-" else "") + first
    return out + "".join(f" {sign} {body}" for sign, body in terms[1:])


def evaluate(rng):
    f, t = rng.choice("fghjkw"), rng.choice(VARS)
    coeffs, text = _poly(rng, t)
    at = _num(rng, -6, 6)
    return f"Let {f}({t}) = {text}. What is {f}({at})?", str(sum(c * at**p for p, c in enumerate(coeffs)))


def derivative(rng):
    t = rng.choice(VARS)
    coeffs, text = _poly(rng, t)
    deriv = [p * c for p, c in enumerate(coeffs)][1:]
    return f"Find the first derivative of {text} wrt {t}.", _poly_text(deriv, t)


def gcd_lcm(rng):
    k = rng.randint(2, 40)
    a, b = k * rng.randint(2, 30), k * rng.randint(2, 30)
    if rng.random() < 0.5:
        return f"What is the greatest common divisor of {a} and {b}?", str(math.gcd(a, b))
    return f"What is the lowest common multiple of {a} and {b}?", str(a * b // math.gcd(a, b))


def remainder(rng):
    n, d = rng.randint(100, 99999), rng.randint(3, 97)
    return f"What is the remainder when {n} is divided by {d}?", str(n % d)


def _to_base(n: int, base: int) -> str:
    digits = "0123456789abcdef"
    sign, n, out = ("-" if n < 0 else ""), abs(n), ""
    while True:
        n, r = divmod(n, base)
        out = digits[r] + out
        if n == 0:
            return sign + out


def base_conversion(rng):
    n, base = rng.randint(-5000, 5000), rng.choice([2, 3, 4, 5, 6, 7, 8, 9, 12, 16])
    if rng.random() < 0.5:
        return f"Convert {n} (base 10) to base {base}.", _to_base(n, base)
    return f"What is {_to_base(n, base)} (base {base}) in base 10?", str(n)


def sort_list(rng):
    values = [_num(rng, -99, 99) for _ in range(rng.randint(3, 7))]
    order = rng.choice(["increasing", "decreasing"])
    ranked = sorted(values, reverse=order == "decreasing")
    return f"Sort {', '.join(map(str, values))} in {order} order.", ", ".join(map(str, ranked))


def rounding(rng):
    value = rng.randint(-10**7, 10**7) / 1000
    place = rng.choice([("ten", -1), ("hundred", -2), ("integer", 0), ("one decimal place", 1)])
    rounded = round(value, place[1])
    shown = str(int(rounded)) if place[1] <= 0 else f"{rounded:.1f}"
    return f"Round {value} to the nearest {place[0]}.", shown


def primality(rng):
    n = rng.randint(2, 20000)
    prime = n > 1 and all(n % d for d in range(2, math.isqrt(n) + 1))
    return f"Is {n} a prime number?", str(prime)


def system(rng):
    x, y = rng.sample(VARS, 2)
    vx, vy = _num(rng), _num(rng)
    while True:
        a, b, c, d = (_num(rng, -9, 9, nonzero=True) for _ in range(4))
        if a * d - b * c:
            break
    ask = rng.choice([x, y])
    return (f"Solve {a}*{x} + {b}*{y} = {a * vx + b * vy}, {c}*{x} + {d}*{y} = {c * vx + d * vy} "
            f"for {ask}.", str(vx if ask == x else vy))


PROBLEMS: list[Callable[[random.Random], tuple[str, str]]] = [
    arithmetic, linear, composed, evaluate, derivative, gcd_lcm, remainder, base_conversion,
    sort_list, rounding, primality, system,
]


def document(seed: int, index: int) -> str:
    rng = random.Random(f"forgetlaw-math:{seed}:{index}")
    lines = []
    for _ in range(PAIRS_PER_DOCUMENT):
        question, answer = rng.choice(PROBLEMS)(rng)
        lines.append(f"{question}\n{answer}")
    return "\n".join(lines)


def generate(seed: int, max_bytes: int) -> Iterator[str]:
    produced, index = 0, 0
    while produced < max_bytes:
        text = document(seed, index)
        produced += len(text.encode())
        index += 1
        yield text
