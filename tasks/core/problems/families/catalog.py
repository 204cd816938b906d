"""The catalogue of bundled problem families (see :mod:`.model` for what a family holds).

Every reference body is 1-4 lines in one formulaic style (``print(expr)``, generator
expressions, ``sorted``/``sum``/``max``), so a tiny model can learn the mapping from statement to
code. :data:`HELD_OUT_FAMILIES` are the families of the ``test_families`` split: never in
train/rl/valid, each a recombination of ideas seen in train. Every family gets its phrasing
reserved for evaluation from :mod:`.reserved` (:func:`with_reserved`).

Limits: answers are exact integers or strings (no floats, no multiple correct outputs).

Over 500 lines because it is data, not logic: 74 family definitions of ~15 formatted lines each,
in one list so a reader sees the whole catalogue (and the held-out families) in one place.
"""

from __future__ import annotations

import random
import string
from dataclasses import replace
from typing import Any

from .model import Family
from .reserved import RESERVED_PHRASINGS
from .shapes import INT, LIST, PAIR, STR, TRIPLE, WORDS

R = random.Random
LOW = string.ascii_lowercase
MIXED = string.ascii_letters
VOWELS = "aeiou"


def ints(lo: int, hi: int):
    return lambda r, k: r.randint(lo, hi)


def pairs(lo: int, hi: int, lo2: int | None = None, hi2: int | None = None):
    lo2, hi2 = (lo, hi) if lo2 is None else (lo2, hi2)
    return lambda r, k: (r.randint(lo, hi), r.randint(lo2, hi2))


def ordered_pairs(lo: int, hi: int):
    return lambda r, k: tuple(sorted((r.randint(lo, hi), r.randint(lo, hi))))


def triples(lo: int, hi: int):
    return lambda r, k: (r.randint(lo, hi), r.randint(lo, hi), r.randint(lo, hi))


def lists(nlo: int, nhi: int, lo: int, hi: int):
    return lambda r, k: [r.randint(lo, hi) for _ in range(r.randint(nlo, nhi))]


def strs(lo: int, hi: int, alphabet: str = LOW):
    return lambda r, k: "".join(r.choice(alphabet) for _ in range(r.randint(lo, hi)))


def sentence(r: R, k: Any) -> str:
    return " ".join(strs(1, 6)(r, k) for _ in range(r.randint(1, 6)))


def yes(b: bool) -> str:
    return "YES" if b else "NO"


def _palindrome(r: R, k: Any) -> str:
    half = strs(1, 5, "abc")(r, k)
    return half + r.choice(["", "a", "b"]) + half[::-1] if r.random() < 0.5 else half + "ab"


def _multiple_or_not(r: R, k: int) -> int:
    return k * r.randint(1, 100) if r.random() < 0.5 else r.randint(1, 1000)


def _factorial(n: int) -> int:
    out = 1
    for i in range(1, n + 1):
        out *= i
    return out


def _product(a: list[int]) -> int:
    out = 1
    for x in a:
        out *= x
    return out


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % i for i in range(2, n))


def _sign(n: int) -> str:
    return "positive" if n > 0 else "negative" if n < 0 else "zero"


def _cmp(a: int, b: int) -> str:
    return "<" if a < b else ">" if a > b else "="


def _join(xs: Any) -> str:
    return " ".join(str(x) for x in xs)


YESNO = "Print YES if {what}, otherwise print NO."

_CATALOGUE: tuple[Family, ...] = (
    # ---------------------------------------------------------------- one integer n
    Family(
        "int-times-k",
        INT,
        ints(-1000, 1000),
        lambda n, k: str(n * k),
        ("print(n * {k})",),
        ("print(n + {k})",),
        (
            "Multiply n by {k} and print the result.",
            "Given an integer n, output {k} times n.",
            "Print the product of n and {k}.",
        ),
        "Print n multiplied by {k}.",
        "-1000 ≤ n ≤ 1000",
        ("math",),
        param=lambda r: r.randint(2, 9),
        edge=lambda k: (5,),
    ),
    Family(
        "int-plus-k",
        INT,
        ints(-1000, 1000),
        lambda n, k: str(n + k),
        ("print(n + {k})",),
        ("print(n + {k} + 1)",),
        (
            "Add {k} to n and print the result.",
            "Given an integer n, output n plus {k}.",
            "Print the number that is {k} larger than n.",
        ),
        "Print n + {k}.",
        "-1000 ≤ n ≤ 1000",
        ("math",),
        param=lambda r: r.randint(1, 20),
    ),
    Family(
        "int-square",
        INT,
        ints(3, 1000),
        lambda n, k: str(n * n),
        ("print(n * n)",),
        ("print(n * 2)",),
        ("Print the square of n.", "Given an integer n, output n squared.", "Compute n times n."),
        "Print n * n.",
        "3 ≤ n ≤ 1000",
        ("math",),
    ),
    Family(
        "int-cube",
        INT,
        ints(4, 1000),
        lambda n, k: str(n**3),
        ("print(n * n * n)",),
        ("print(n * n * 3)",),
        (
            "Print the cube of n.",
            "Given an integer n, output n to the third power.",
            "Compute n times n times n.",
        ),
        "Print n * n * n.",
        "4 ≤ n ≤ 1000",
        ("math",),
    ),
    Family(
        "int-parity",
        INT,
        ints(0, 10**6),
        lambda n, k: "even" if n % 2 == 0 else "odd",
        ('print("even" if n % 2 == 0 else "odd")',),
        ('print("even" if n % 2 == 1 else "odd")',),
        (
            "Decide whether n is even or odd.",
            "Tell if the integer n is even or odd.",
            "Check the parity of n.",
        ),
        "Print even if n is even, otherwise print odd.",
        "0 ≤ n ≤ 10^6",
        ("math",),
    ),
    Family(
        "int-digit-sum",
        INT,
        ints(10, 10**9),
        lambda n, k: str(sum(map(int, str(n)))),
        ("print(sum(map(int, str(n))))",),
        ("print(len(str(n)))",),
        (
            "Print the sum of the digits of n.",
            "Add up all decimal digits of n.",
            "Given a positive integer n, compute its digit sum.",
        ),
        "Print the sum of the digits.",
        "10 ≤ n ≤ 10^9",
        ("math", "implementation"),
        edge=lambda k: (59,),
    ),
    Family(
        "int-digit-count",
        INT,
        ints(1, 10**9),
        lambda n, k: str(len(str(n))),
        ("print(len(str(n)))",),
        ("print(len(str(n)) - 1)",),
        (
            "Print how many digits n has.",
            "Count the decimal digits of n.",
            "Given a positive integer n, output the length of its decimal notation.",
        ),
        "Print the number of digits.",
        "1 ≤ n ≤ 10^9",
        ("implementation",),
    ),
    Family(
        "int-last-digit",
        INT,
        ints(10, 10**9),
        lambda n, k: str(n % 10),
        ("print(n % 10)",),
        ("print(n // 10)",),
        (
            "Print the last digit of n.",
            "Output the rightmost decimal digit of n.",
            "Given a positive integer n, find the digit it ends with.",
        ),
        "Print the last digit.",
        "10 ≤ n ≤ 10^9",
        ("math",),
        edge=lambda k: (123,),
    ),
    Family(
        "int-reverse-digits",
        INT,
        lambda r, k: r.randint(1, 9999) * r.choice([1, 10, 100]),
        lambda n, k: str(int(str(n)[::-1])),
        ("print(int(str(n)[::-1]))",),
        ("print(str(n)[::-1])",),
        (
            "Reverse the digits of n and print the resulting number without leading zeros.",
            "Write the digits of n backwards and output that number (drop leading zeros).",
            "Print the number formed by the digits of n in reverse order, without leading zeros.",
        ),
        "Print the reversed number.",
        "1 ≤ n ≤ 10^6",
        ("implementation",),
        edge=lambda k: (120,),
    ),
    Family(
        "int-sum-to-n",
        INT,
        ints(1, 1000),
        lambda n, k: str(n * (n + 1) // 2),
        ("print(sum(range(1, n + 1)))",),
        ("print(sum(range(1, n)))",),
        (
            "Print the sum 1 + 2 + ... + n.",
            "Add up all integers from 1 to n.",
            "Compute the sum of the first n positive integers.",
        ),
        "Print the sum.",
        "1 ≤ n ≤ 1000",
        ("math",),
    ),
    Family(
        "int-sum-even-to-n",
        INT,
        ints(1, 1000),
        lambda n, k: str(sum(range(0, n + 1, 2))),
        ("print(sum(range(0, n + 1, 2)))",),
        ("print(sum(range(0, n, 2)))",),
        (
            "Print the sum of all even numbers from 0 to n inclusive.",
            "Add up the even integers between 0 and n, including n if it is even.",
            "Compute 0 + 2 + 4 + ... up to n.",
        ),
        "Print the sum.",
        "1 ≤ n ≤ 1000",
        ("math",),
        edge=lambda k: (10,),
    ),
    Family(
        "int-factorial",
        INT,
        ints(2, 12),
        lambda n, k: str(_factorial(n)),
        ("r = 1", "for i in range(1, n + 1):", "    r *= i", "print(r)"),
        ("r = 1", "for i in range(1, n):", "    r *= i", "print(r)"),
        (
            "Print n factorial.",
            "Compute the product 1 * 2 * ... * n.",
            "Given n, output n! (the factorial of n).",
        ),
        "Print n!.",
        "2 ≤ n ≤ 12",
        ("math",),
        rating=900,
    ),
    Family(
        "int-abs",
        INT,
        ints(-1000, 1000),
        lambda n, k: str(abs(n)),
        ("print(abs(n))",),
        ("print(n)",),
        (
            "Print the absolute value of n.",
            "Output n without its minus sign.",
            "Given an integer n, print its distance from zero.",
        ),
        "Print |n|.",
        "-1000 ≤ n ≤ 1000",
        ("math",),
        edge=lambda k: (-7,),
    ),
    Family(
        "int-sign",
        INT,
        ints(-10, 10),
        lambda n, k: _sign(n),
        ('print("positive" if n > 0 else "negative" if n < 0 else "zero")',),
        ('print("positive" if n >= 0 else "negative")',),
        (
            "Tell whether n is positive, negative or zero.",
            "Classify the sign of the integer n.",
            "Decide if n is greater than, less than or equal to zero.",
        ),
        "Print positive, negative or zero.",
        "-10 ≤ n ≤ 10",
        ("implementation",),
        edge=lambda k: (0,),
    ),
    Family(
        "int-divisible-by-k",
        INT,
        _multiple_or_not,
        lambda n, k: yes(n % k == 0),
        ('print("YES" if n % {k} == 0 else "NO")',),
        ('print("YES" if n % {k} else "NO")',),
        (
            "Check whether n is divisible by {k}.",
            "Decide if {k} divides n evenly.",
            "Is n a multiple of {k}?",
        ),
        YESNO.format(what="n is divisible by {k}"),
        "1 ≤ n ≤ 1000",
        ("math",),
        param=lambda r: r.randint(2, 9),
    ),
    Family(
        "int-mod-k",
        INT,
        ints(0, 1000),
        lambda n, k: str(n % k),
        ("print(n % {k})",),
        ("print(n // {k})",),
        (
            "Print the remainder of n divided by {k}.",
            "Compute n modulo {k}.",
            "Output what is left after dividing n by {k}.",
        ),
        "Print n mod {k}.",
        "0 ≤ n ≤ 1000",
        ("math",),
        param=lambda r: r.randint(2, 9),
        edge=lambda k: (k * 7 + 1,),
    ),
    Family(
        "int-count-divisors",
        INT,
        ints(1, 1000),
        lambda n, k: str(sum(1 for i in range(1, n + 1) if n % i == 0)),
        ("print(sum(1 for i in range(1, n + 1) if n % i == 0))",),
        ("print(sum(1 for i in range(1, n) if n % i == 0))",),
        (
            "Count the positive divisors of n.",
            "How many integers from 1 to n divide n?",
            "Print the number of divisors of n.",
        ),
        "Print the number of divisors.",
        "1 ≤ n ≤ 1000",
        ("math", "number theory"),
        rating=900,
    ),
    Family(
        "int-is-prime",
        INT,
        ints(2, 1000),
        lambda n, k: yes(_is_prime(n)),
        ('print("YES" if all(n % i for i in range(2, n)) else "NO")',),
        ('print("YES" if all(n % i for i in range(3, n)) else "NO")',),
        ("Check whether n is a prime number.", "Decide if n is prime.", "Is the integer n prime?"),
        YESNO.format(what="n is prime"),
        "2 ≤ n ≤ 1000",
        ("math", "number theory"),
        rating=900,
        edge=lambda k: (4,),
    ),
    Family(
        "int-binary",
        INT,
        ints(1, 10**6),
        lambda n, k: bin(n)[2:],
        ("print(bin(n)[2:])",),
        ("print(bin(n))",),
        (
            "Print n in binary.",
            "Write the integer n in base 2.",
            "Output the binary representation of n without leading zeros.",
        ),
        "Print the binary notation of n.",
        "1 ≤ n ≤ 10^6",
        ("bitmasks",),
    ),
    Family(
        "int-count-ones",
        INT,
        ints(2, 10**6),
        lambda n, k: str(bin(n).count("1")),
        ('print(bin(n).count("1"))',),
        ('print(bin(n).count("0"))',),
        (
            "Count the ones in the binary notation of n.",
            "How many bits of n are set to 1?",
            "Print the number of 1 bits of n.",
        ),
        "Print the number of ones.",
        "2 ≤ n ≤ 10^6",
        ("bitmasks",),
        edge=lambda k: (7,),
    ),
    Family(
        "int-power-of-two",
        INT,
        ints(0, 60),
        lambda n, k: str(2**n),
        ("print(2 ** n)",),
        ("print(2 * n)",),
        ("Print 2 to the power n.", "Compute 2^n.", "Output two raised to the n-th power."),
        "Print 2^n.",
        "0 ≤ n ≤ 60",
        ("math",),
        edge=lambda k: (10,),
    ),
    # ---------------------------------------------------------------- two integers a, b
    Family(
        "pair-sum",
        PAIR,
        pairs(-1000, 1000),
        lambda c, k: str(c[0] + c[1]),
        ("print(a + b)",),
        ("print(a - b)",),
        ("Print the sum of a and b.", "Add the two integers a and b.", "Compute a + b."),
        "Print a + b.",
        "-1000 ≤ a, b ≤ 1000",
        ("math",),
        edge=lambda k: ((3, 4),),
    ),
    Family(
        "pair-diff",
        PAIR,
        pairs(-1000, 1000),
        lambda c, k: str(c[0] - c[1]),
        ("print(a - b)",),
        ("print(b - a)",),
        ("Print a minus b.", "Subtract b from a.", "Compute the difference a - b."),
        "Print a - b.",
        "-1000 ≤ a, b ≤ 1000",
        ("math",),
        edge=lambda k: ((3, 4),),
    ),
    Family(
        "pair-product",
        PAIR,
        pairs(-1000, 1000),
        lambda c, k: str(c[0] * c[1]),
        ("print(a * b)",),
        ("print(a + b)",),
        ("Print the product of a and b.", "Multiply a by b.", "Compute a * b."),
        "Print a * b.",
        "-1000 ≤ a, b ≤ 1000",
        ("math",),
        edge=lambda k: ((3, 4),),
    ),
    Family(
        "pair-absdiff",
        PAIR,
        pairs(-1000, 1000),
        lambda c, k: str(abs(c[0] - c[1])),
        ("print(abs(a - b))",),
        ("print(a - b)",),
        ("Print the absolute difference of a and b.", "How far apart are a and b?", "Compute |a - b|."),
        "Print |a - b|.",
        "-1000 ≤ a, b ≤ 1000",
        ("math",),
        edge=lambda k: ((2, 9),),
    ),
    Family(
        "pair-max",
        PAIR,
        pairs(-1000, 1000),
        lambda c, k: str(max(c)),
        ("print(max(a, b))",),
        ("print(min(a, b))",),
        (
            "Print the larger of a and b.",
            "Output the maximum of two integers a and b.",
            "Which of a and b is bigger? Print it.",
        ),
        "Print max(a, b).",
        "-1000 ≤ a, b ≤ 1000",
        ("implementation",),
        edge=lambda k: ((1, 5),),
    ),
    Family(
        "pair-min",
        PAIR,
        pairs(-1000, 1000),
        lambda c, k: str(min(c)),
        ("print(min(a, b))",),
        ("print(max(a, b))",),
        (
            "Print the smaller of a and b.",
            "Output the minimum of two integers a and b.",
            "Which of a and b is smaller? Print it.",
        ),
        "Print min(a, b).",
        "-1000 ≤ a, b ≤ 1000",
        ("implementation",),
        edge=lambda k: ((1, 5),),
    ),
    Family(
        "pair-div",
        PAIR,
        pairs(0, 1000, 1, 50),
        lambda c, k: str(c[0] // c[1]),
        ("print(a // b)",),
        ("print(a % b)",),
        (
            "Print a divided by b, rounded down.",
            "Compute the integer quotient of a and b.",
            "How many whole times does b fit into a?",
        ),
        "Print the quotient.",
        "0 ≤ a ≤ 1000, 1 ≤ b ≤ 50",
        ("math",),
        edge=lambda k: ((17, 5),),
    ),
    Family(
        "pair-mod",
        PAIR,
        pairs(0, 1000, 1, 50),
        lambda c, k: str(c[0] % c[1]),
        ("print(a % b)",),
        ("print(a // b)",),
        (
            "Print the remainder of a divided by b.",
            "Compute a modulo b.",
            "What is left after dividing a by b?",
        ),
        "Print a mod b.",
        "0 ≤ a ≤ 1000, 1 ≤ b ≤ 50",
        ("math",),
        edge=lambda k: ((17, 5),),
    ),
    Family(
        "pair-compare",
        PAIR,
        pairs(-5, 5),
        lambda c, k: _cmp(*c),
        ('print("<" if a < b else ">" if a > b else "=")',),
        ('print("<" if a < b else ">")',),
        (
            "Compare a and b.",
            "Tell whether a is less than, greater than or equal to b.",
            "Decide how the integers a and b relate.",
        ),
        "Print <, > or =.",
        "-5 ≤ a, b ≤ 5",
        ("implementation",),
        edge=lambda k: ((2, 2),),
    ),
    Family(
        "pair-gcd",
        PAIR,
        pairs(1, 1000),
        lambda c, k: str(_gcd(*c)),
        ("print(math.gcd(a, b))",),
        ("print(min(a, b))",),
        (
            "Print the greatest common divisor of a and b.",
            "Compute gcd(a, b).",
            "Find the largest integer that divides both a and b.",
        ),
        "Print gcd(a, b).",
        "1 ≤ a, b ≤ 1000",
        ("math", "number theory"),
        edge=lambda k: ((4, 6),),
        imports=("import math",),
    ),
    Family(
        "pair-lcm",
        PAIR,
        pairs(1, 1000),
        lambda c, k: str(c[0] * c[1] // _gcd(*c)),
        ("print(a * b // math.gcd(a, b))",),
        ("print(a * b)",),
        (
            "Print the least common multiple of a and b.",
            "Compute lcm(a, b).",
            "Find the smallest positive integer divisible by both a and b.",
        ),
        "Print lcm(a, b).",
        "1 ≤ a, b ≤ 1000",
        ("math", "number theory"),
        edge=lambda k: ((4, 6),),
        imports=("import math",),
    ),
    Family(
        "pair-range-sum",
        PAIR,
        ordered_pairs(-100, 100),
        lambda c, k: str(sum(range(c[0], c[1] + 1))),
        ("print(sum(range(a, b + 1)))",),
        ("print(sum(range(a, b)))",),
        (
            "Print the sum of all integers from a to b inclusive.",
            "Add up a, a + 1, ..., b.",
            "Compute the sum of the integers between a and b.",
        ),
        "Print the sum.",
        "-100 ≤ a ≤ b ≤ 100",
        ("math",),
        edge=lambda k: ((1, 3),),
    ),
    Family(
        "pair-divides",
        PAIR,
        lambda r, k: (r.randint(1, 20) * r.randint(1, 5), r.randint(1, 20)),
        lambda c, k: yes(c[0] % c[1] == 0),
        ('print("YES" if a % b == 0 else "NO")',),
        ('print("YES" if b % a == 0 else "NO")',),
        ("Check whether a is divisible by b.", "Decide if b divides a.", "Is a a multiple of b?"),
        YESNO.format(what="a is divisible by b"),
        "1 ≤ a ≤ 100, 1 ≤ b ≤ 20",
        ("math",),
        edge=lambda k: ((6, 3),),
    ),
    Family(
        "pair-power",
        PAIR,
        pairs(1, 9, 0, 9),
        lambda c, k: str(c[0] ** c[1]),
        ("print(a ** b)",),
        ("print(a * b)",),
        ("Print a to the power b.", "Compute a^b.", "Raise a to the b-th power."),
        "Print a^b.",
        "1 ≤ a ≤ 9, 0 ≤ b ≤ 9",
        ("math",),
        edge=lambda k: ((3, 3),),
    ),
    Family(
        "pair-average",
        PAIR,
        pairs(0, 1000),
        lambda c, k: str((c[0] + c[1]) // 2),
        ("print((a + b) // 2)",),
        ("print((a + b) / 2)",),
        (
            "Print the average of a and b, rounded down.",
            "Compute (a + b) / 2 rounded down to an integer.",
            "Output the integer part of the mean of a and b.",
        ),
        "Print the rounded-down average.",
        "0 ≤ a, b ≤ 1000",
        ("math",),
        edge=lambda k: ((1, 2),),
    ),
    # ---------------------------------------------------------------- three integers a, b, c
    Family(
        "triple-sum",
        TRIPLE,
        triples(-1000, 1000),
        lambda c, k: str(sum(c)),
        ("print(a + b + c)",),
        ("print(a + b)",),
        ("Print the sum of a, b and c.", "Add the three integers.", "Compute a + b + c."),
        "Print a + b + c.",
        "-1000 ≤ a, b, c ≤ 1000",
        ("math",),
        edge=lambda k: ((1, 2, 3),),
    ),
    Family(
        "triple-max",
        TRIPLE,
        triples(-1000, 1000),
        lambda c, k: str(max(c)),
        ("print(max(a, b, c))",),
        ("print(max(a, b))",),
        (
            "Print the largest of a, b and c.",
            "Output the maximum of the three integers.",
            "Which of a, b, c is the biggest? Print it.",
        ),
        "Print max(a, b, c).",
        "-1000 ≤ a, b, c ≤ 1000",
        ("implementation",),
        edge=lambda k: ((1, 2, 9),),
    ),
    Family(
        "triple-min",
        TRIPLE,
        triples(-1000, 1000),
        lambda c, k: str(min(c)),
        ("print(min(a, b, c))",),
        ("print(min(a, b))",),
        (
            "Print the smallest of a, b and c.",
            "Output the minimum of the three integers.",
            "Which of a, b, c is the smallest? Print it.",
        ),
        "Print min(a, b, c).",
        "-1000 ≤ a, b, c ≤ 1000",
        ("implementation",),
        edge=lambda k: ((5, 2, -9),),
    ),
    Family(
        "triple-median",
        TRIPLE,
        triples(-1000, 1000),
        lambda c, k: str(sorted(c)[1]),
        ("print(sorted([a, b, c])[1])",),
        ("print(sorted([a, b, c])[0])",),
        (
            "Print the median of a, b and c.",
            "Output the middle value of the three integers.",
            "Sort a, b, c and print the one in the middle.",
        ),
        "Print the median.",
        "-1000 ≤ a, b, c ≤ 1000",
        ("sortings",),
        edge=lambda k: ((1, 2, 3),),
    ),
    Family(
        "triple-triangle",
        TRIPLE,
        triples(1, 20),
        lambda c, k: yes(c[0] + c[1] > c[2] and c[0] + c[2] > c[1] and c[1] + c[2] > c[0]),
        ('print("YES" if a + b > c and a + c > b and b + c > a else "NO")',),
        ('print("YES" if a + b > c else "NO")',),
        (
            "Can sticks of lengths a, b and c form a triangle of positive area?",
            "Decide whether a triangle with sides a, b, c exists.",
            "Check the triangle inequality for a, b and c.",
        ),
        YESNO.format(what="a triangle exists"),
        "1 ≤ a, b, c ≤ 20",
        ("geometry", "math"),
        edge=lambda k: ((1, 10, 2),),
    ),
    Family(
        "triple-all-equal",
        TRIPLE,
        lambda r, k: (r.randint(1, 3), r.randint(1, 3), r.randint(1, 3)),
        lambda c, k: yes(c[0] == c[1] == c[2]),
        ('print("YES" if a == b == c else "NO")',),
        ('print("YES" if a == b else "NO")',),
        (
            "Check whether a, b and c are all equal.",
            "Are the three integers the same?",
            "Decide if a = b = c.",
        ),
        YESNO.format(what="all three are equal"),
        "1 ≤ a, b, c ≤ 3",
        ("implementation",),
        edge=lambda k: ((2, 2, 3),),
    ),
    # ---------------------------------------------------------------- a list a_1..a_n
    Family(
        "list-sum",
        LIST,
        lists(1, 10, -100, 100),
        lambda a, k: str(sum(a)),
        ("print(sum(a))",),
        ("print(sum(a[1:]))",),
        ("Print the sum of the numbers.", "Add up all the given integers.", "Compute a_1 + a_2 + ... + a_n."),
        "Print the sum.",
        "1 ≤ n ≤ 10, -100 ≤ a_i ≤ 100",
        ("implementation",),
        edge=lambda k: ([5, 1, 2],),
    ),
    Family(
        "list-max",
        LIST,
        lists(1, 10, -100, 100),
        lambda a, k: str(max(a)),
        ("print(max(a))",),
        ("print(a[-1])",),
        (
            "Print the largest number.",
            "Find the maximum of the given integers.",
            "Which of the numbers is the biggest? Print it.",
        ),
        "Print the maximum.",
        "1 ≤ n ≤ 10, -100 ≤ a_i ≤ 100",
        ("implementation",),
        edge=lambda k: ([9, 1, 2],),
    ),
    Family(
        "list-min",
        LIST,
        lists(1, 10, -100, 100),
        lambda a, k: str(min(a)),
        ("print(min(a))",),
        ("print(a[0])",),
        (
            "Print the smallest number.",
            "Find the minimum of the given integers.",
            "Which of the numbers is the smallest? Print it.",
        ),
        "Print the minimum.",
        "1 ≤ n ≤ 10, -100 ≤ a_i ≤ 100",
        ("implementation",),
        edge=lambda k: ([9, 1, 2],),
    ),
    Family(
        "list-count-even",
        LIST,
        lists(1, 10, 0, 100),
        lambda a, k: str(sum(1 for x in a if x % 2 == 0)),
        ("print(sum(1 for x in a if x % 2 == 0))",),
        ("print(sum(1 for x in a if x % 2 == 1))",),
        (
            "Count the even numbers.",
            "How many of the integers are even?",
            "Print the number of even values among a_1, ..., a_n.",
        ),
        "Print the count.",
        "1 ≤ n ≤ 10, 0 ≤ a_i ≤ 100",
        ("implementation",),
        edge=lambda k: ([2, 4, 6],),
    ),
    Family(
        "list-count-positive",
        LIST,
        lists(1, 10, -5, 5),
        lambda a, k: str(sum(1 for x in a if x > 0)),
        ("print(sum(1 for x in a if x > 0))",),
        ("print(sum(1 for x in a if x >= 0))",),
        (
            "Count the positive numbers.",
            "How many of the integers are greater than zero?",
            "Print the number of positive values among a_1, ..., a_n.",
        ),
        "Print the count.",
        "1 ≤ n ≤ 10, -5 ≤ a_i ≤ 5",
        ("implementation",),
        edge=lambda k: ([0, 1, -1],),
    ),
    Family(
        "list-count-greater-k",
        LIST,
        lists(1, 10, 0, 50),
        lambda a, k: str(sum(1 for x in a if x > k)),
        ("print(sum(1 for x in a if x > {k}))",),
        ("print(sum(1 for x in a if x >= {k}))",),
        (
            "Count the numbers greater than {k}.",
            "How many of the integers exceed {k}?",
            "Print how many a_i are strictly larger than {k}.",
        ),
        "Print the count.",
        "1 ≤ n ≤ 10, 0 ≤ a_i ≤ 50",
        ("implementation",),
        param=lambda r: r.randint(1, 50),  # k = 0 would be list-count-positive's program
        edge=lambda k: ([k, k + 1],),
    ),
    Family(
        "list-sort",
        LIST,
        lists(1, 10, -100, 100),
        lambda a, k: _join(sorted(a)),
        ("print(*sorted(a))",),
        ("print(*a)",),
        (
            "Sort the numbers in non-decreasing order.",
            "Print the integers from smallest to largest.",
            "Arrange the given numbers in ascending order.",
        ),
        "Print the sorted numbers separated by spaces.",
        "1 ≤ n ≤ 10, -100 ≤ a_i ≤ 100",
        ("sortings",),
        edge=lambda k: ([3, 1, 2],),
    ),
    Family(
        "list-sort-desc",
        LIST,
        lists(1, 10, -100, 100),
        lambda a, k: _join(sorted(a, reverse=True)),
        ("print(*sorted(a, reverse=True))",),
        ("print(*sorted(a))",),
        (
            "Sort the numbers in non-increasing order.",
            "Print the integers from largest to smallest.",
            "Arrange the given numbers in descending order.",
        ),
        "Print the sorted numbers separated by spaces.",
        "1 ≤ n ≤ 10, -100 ≤ a_i ≤ 100",
        ("sortings",),
        edge=lambda k: ([3, 1, 2],),
    ),
    Family(
        "list-reverse",
        LIST,
        lists(1, 10, -100, 100),
        lambda a, k: _join(a[::-1]),
        ("print(*a[::-1])",),
        ("print(*a)",),
        (
            "Print the numbers in reverse order.",
            "Output the list backwards.",
            "Print a_n, a_(n-1), ..., a_1.",
        ),
        "Print the numbers separated by spaces.",
        "1 ≤ n ≤ 10, -100 ≤ a_i ≤ 100",
        ("implementation",),
        edge=lambda k: ([1, 2, 3],),
    ),
    Family(
        "list-range",
        LIST,
        lists(1, 10, -100, 100),
        lambda a, k: str(max(a) - min(a)),
        ("print(max(a) - min(a))",),
        ("print(max(a) - a[0])",),
        (
            "Print the difference between the largest and the smallest number.",
            "Compute max minus min of the integers.",
            "How wide is the range of the numbers?",
        ),
        "Print max - min.",
        "1 ≤ n ≤ 10, -100 ≤ a_i ≤ 100",
        ("implementation",),
        edge=lambda k: ([5, 1, 9],),
    ),
    Family(
        "list-sum-squares",
        LIST,
        lists(1, 10, -100, 100),
        lambda a, k: str(sum(x * x for x in a)),
        ("print(sum(x * x for x in a))",),
        ("print(sum(x * 2 for x in a))",),
        (
            "Print the sum of the squares of the numbers.",
            "Add up a_i * a_i over all i.",
            "Compute a_1^2 + a_2^2 + ... + a_n^2.",
        ),
        "Print the sum of squares.",
        "1 ≤ n ≤ 10, -100 ≤ a_i ≤ 100",
        ("math",),
        edge=lambda k: ([3],),
    ),
    Family(
        "list-distinct",
        LIST,
        lists(1, 10, 1, 5),
        lambda a, k: str(len(set(a))),
        ("print(len(set(a)))",),
        ("print(len(a))",),
        (
            "Count the distinct values.",
            "How many different numbers are there?",
            "Print the number of unique integers among a_1, ..., a_n.",
        ),
        "Print the count.",
        "1 ≤ n ≤ 10, 1 ≤ a_i ≤ 5",
        ("implementation",),
        edge=lambda k: ([1, 1, 2],),
    ),
    Family(
        "list-product",
        LIST,
        lists(1, 6, -9, 9),
        lambda a, k: str(_product(a)),
        ("r = 1", "for x in a:", "    r *= x", "print(r)"),
        ("r = 0", "for x in a:", "    r *= x", "print(r)"),
        (
            "Print the product of the numbers.",
            "Multiply all the given integers.",
            "Compute a_1 * a_2 * ... * a_n.",
        ),
        "Print the product.",
        "1 ≤ n ≤ 6, -9 ≤ a_i ≤ 9",
        ("math",),
        rating=900,
        edge=lambda k: ([2, 3],),
    ),
    Family(
        "list-count-k",
        LIST,
        lists(1, 10, -3, 3),
        lambda a, k: str(a.count(k)),
        ("print(a.count({k}))",),
        ("print(len(a) - a.count({k}))",),
        (
            "Count how many times {k} occurs.",
            "How many of the integers are equal to {k}?",
            "Print the number of a_i equal to {k}.",
        ),
        "Print the count.",
        "1 ≤ n ≤ 10, -3 ≤ a_i ≤ 3",
        ("implementation",),
        param=lambda r: r.randint(-3, 3),
        edge=lambda k: ([k, k],),
    ),
    # ---------------------------------------------------------------- a string s
    Family(
        "str-reverse",
        STR,
        strs(1, 10),
        lambda s, k: s[::-1],
        ("print(s[::-1])",),
        ("print(s)",),
        (
            "Print s reversed.",
            "Write the string s backwards.",
            "Output the characters of s in reverse order.",
        ),
        "Print the reversed string.",
        "1 ≤ |s| ≤ 10, lowercase letters",
        ("strings",),
        edge=lambda k: ("abc",),
    ),
    Family(
        "str-upper",
        STR,
        strs(1, 10),
        lambda s, k: s.upper(),
        ("print(s.upper())",),
        ("print(s.lower())",),
        (
            "Convert s to uppercase.",
            "Print s in capital letters.",
            "Replace every letter of s by its uppercase form.",
        ),
        "Print the converted string.",
        "1 ≤ |s| ≤ 10, lowercase letters",
        ("strings",),
    ),
    Family(
        "str-lower",
        STR,
        strs(1, 10, MIXED),
        lambda s, k: s.lower(),
        ("print(s.lower())",),
        ("print(s)",),
        (
            "Convert s to lowercase.",
            "Print s in small letters.",
            "Replace every letter of s by its lowercase form.",
        ),
        "Print the converted string.",
        "1 ≤ |s| ≤ 10, English letters",
        ("strings",),
        edge=lambda k: ("AbC",),
    ),
    Family(
        "str-swapcase",
        STR,
        strs(1, 10, MIXED),
        lambda s, k: s.swapcase(),
        ("print(s.swapcase())",),
        ("print(s.upper())",),
        (
            "Swap the case of every letter of s.",
            "Turn uppercase letters of s into lowercase and vice versa.",
            "Invert the case of each character of s.",
        ),
        "Print the converted string.",
        "1 ≤ |s| ≤ 10, English letters",
        ("strings",),
        edge=lambda k: ("Ab",),
    ),
    Family(
        "str-length",
        STR,
        strs(1, 10),
        lambda s, k: str(len(s)),
        ("print(len(s))",),
        ("print(len(s) - 1)",),
        ("Print the length of s.", "How many characters does s have?", "Count the letters of the string s."),
        "Print the length.",
        "1 ≤ |s| ≤ 10, lowercase letters",
        ("strings",),
    ),
    Family(
        "str-count-vowels",
        STR,
        strs(1, 10),
        lambda s, k: str(sum(1 for c in s if c in VOWELS)),
        ('print(sum(1 for c in s if c in "aeiou"))',),
        ('print(sum(1 for c in s if c in "aeio"))',),
        (
            "Count the vowels in s.",
            "How many letters of s are vowels (a, e, i, o, u)?",
            "Print the number of vowels a, e, i, o, u in the string s.",
        ),
        "Print the count.",
        "1 ≤ |s| ≤ 10, lowercase letters",
        ("strings",),
        edge=lambda k: ("ququ",),
    ),
    Family(
        "str-remove-vowels",
        STR,
        strs(1, 10),
        lambda s, k: "".join(c for c in s if c not in VOWELS) or "-",
        ('print("".join(c for c in s if c not in "aeiou") or "-")',),
        ('print(s.replace("a", "") or "-")',),
        (
            "Delete all vowels (a, e, i, o, u) from s.",
            "Print s without its vowels.",
            "Remove the letters a, e, i, o and u from the string s.",
        ),
        "Print the remaining string, or - if it is empty.",
        "1 ≤ |s| ≤ 10, lowercase letters",
        ("strings",),
        edge=lambda k: ("beio",),
    ),
    Family(
        "str-palindrome",
        STR,
        _palindrome,
        lambda s, k: yes(s == s[::-1]),
        ('print("YES" if s == s[::-1] else "NO")',),
        ('print("YES" if s[0] == s[-1] else "NO")',),
        (
            "Check whether s is a palindrome.",
            "Does s read the same forwards and backwards?",
            "Decide if the string s equals its reverse.",
        ),
        YESNO.format(what="s is a palindrome"),
        "1 ≤ |s| ≤ 12, lowercase letters",
        ("strings",),
        edge=lambda k: ("abca",),
    ),
    Family(
        "str-count-char-k",
        STR,
        strs(1, 10, "abcde"),
        lambda s, k: str(s.count(k)),
        ('print(s.count("{k}"))',),
        ('print(len(s) - s.count("{k}"))',),
        (
            "Count the letters {k} in s.",
            "How many times does the letter {k} occur in s?",
            "Print the number of characters of s equal to {k}.",
        ),
        "Print the count.",
        "1 ≤ |s| ≤ 10, letters a to e",
        ("strings",),
        param=lambda r: r.choice("abcde"),
        edge=lambda k: (k * 3,),
    ),
    Family(
        "str-first-last",
        STR,
        strs(2, 10),
        lambda s, k: s[0] + s[-1],
        ("print(s[0] + s[-1])",),
        ("print(s[0] + s[1])",),
        (
            "Print the first and the last letter of s.",
            "Output the first character of s followed by its last character.",
            "Join the first and last letters of s.",
        ),
        "Print two letters.",
        "2 ≤ |s| ≤ 10, lowercase letters",
        ("strings",),
        edge=lambda k: ("abc",),
    ),
    Family(
        "str-double-chars",
        STR,
        strs(1, 10),
        lambda s, k: "".join(c * 2 for c in s),
        ('print("".join(c * 2 for c in s))',),
        ("print(s * 2)",),
        (
            "Write every letter of s twice.",
            "Double each character of s.",
            "Replace each letter c of s by cc.",
        ),
        "Print the new string.",
        "1 ≤ |s| ≤ 10, lowercase letters",
        ("strings",),
        edge=lambda k: ("ab",),
    ),
    Family(
        "str-count-upper",
        STR,
        strs(1, 10, MIXED),
        lambda s, k: str(sum(1 for c in s if c.isupper())),
        ("print(sum(1 for c in s if c.isupper()))",),
        ("print(sum(1 for c in s if c.islower()))",),
        (
            "Count the uppercase letters in s.",
            "How many capital letters does s contain?",
            "Print the number of uppercase characters of s.",
        ),
        "Print the count.",
        "1 ≤ |s| ≤ 10, English letters",
        ("strings",),
        edge=lambda k: ("ABc",),
    ),
    Family(
        "str-repeat-k",
        STR,
        strs(1, 5),
        lambda s, k: s * k,
        ("print(s * {k})",),
        ("print(s * ({k} - 1))",),
        (
            "Print s repeated {k} times.",
            "Write the string s {k} times in a row.",
            "Concatenate {k} copies of s.",
        ),
        "Print the new string.",
        "1 ≤ |s| ≤ 5, lowercase letters",
        ("strings",),
        param=lambda r: r.randint(2, 4),
    ),
    # ---------------------------------------------------------------- a sentence s
    Family(
        "words-count",
        WORDS,
        sentence,
        lambda s, k: str(len(s.split())),
        ("print(len(s.split()))",),
        ('print(s.count(" "))',),
        (
            "Count the words in s.",
            "How many words does the sentence contain?",
            "Print the number of words of s.",
        ),
        "Print the count.",
        "1 to 6 words of lowercase letters",
        ("strings",),
    ),
    Family(
        "words-longest",
        WORDS,
        sentence,
        lambda s, k: str(max(len(w) for w in s.split())),
        ("print(max(len(w) for w in s.split()))",),
        ("print(len(s.split()[0]))",),
        (
            "Print the length of the longest word.",
            "How long is the longest word of s?",
            "Find the maximum word length in the sentence.",
        ),
        "Print the length.",
        "1 to 6 words of lowercase letters",
        ("strings",),
        edge=lambda k: ("a bbb",),
    ),
    Family(
        "words-reverse-order",
        WORDS,
        sentence,
        lambda s, k: " ".join(s.split()[::-1]),
        ("print(*s.split()[::-1])",),
        ("print(s[::-1])",),
        (
            "Print the words of s in reverse order.",
            "Reverse the order of the words.",
            "Output the last word first and the first word last.",
        ),
        "Print the words separated by single spaces.",
        "1 to 6 words of lowercase letters",
        ("strings",),
        edge=lambda k: ("ab cd",),
    ),
    Family(
        "words-title",
        WORDS,
        sentence,
        lambda s, k: " ".join(w.capitalize() for w in s.split()),
        ("print(s.title())",),
        ("print(s.capitalize())",),
        (
            "Capitalize the first letter of every word.",
            "Make each word of s start with a capital letter.",
            "Print s in title case.",
        ),
        "Print the new sentence.",
        "1 to 6 words of lowercase letters",
        ("strings",),
        edge=lambda k: ("ab cd",),
    ),
    Family(
        "words-initials",
        WORDS,
        sentence,
        lambda s, k: "".join(w[0] for w in s.split()).upper(),
        ('print("".join(w[0] for w in s.split()).upper())',),
        ('print("".join(w[0] for w in s.split()))',),
        (
            "Print the uppercase initials of the words.",
            "Form an acronym from the first letters of the words, in capitals.",
            "Take the first letter of every word and print them together in uppercase.",
        ),
        "Print the acronym.",
        "1 to 6 words of lowercase letters",
        ("strings",),
    ),
)


def with_reserved(families: tuple[Family, ...], reserved: dict[str, str]) -> tuple[Family, ...]:
    """``families`` with their reserved phrasing filled in; every family needs exactly one entry."""
    names = {f.name for f in families}
    if set(reserved) != names:
        missing, extra = sorted(names - set(reserved)), sorted(set(reserved) - names)
        raise ValueError(f"reserved phrasings must match the families: missing {missing}, unknown {extra}")
    return tuple(replace(f, reserved_phrasings=(reserved[f.name],)) for f in families)


FAMILIES: tuple[Family, ...] = with_reserved(_CATALOGUE, RESERVED_PHRASINGS)

HELD_OUT_FAMILIES: frozenset[str] = frozenset(
    {
        "int-cube",
        "int-sum-even-to-n",
        "pair-lcm",
        "pair-average",
        "triple-min",
        "list-sort-desc",
        "list-sum-squares",
        "str-remove-vowels",
        "str-count-upper",
        "words-initials",
        "int-count-ones",
        "pair-range-sum",
        "str-first-last",
    }
)
