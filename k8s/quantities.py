"""Kubernetes resource quantities as the API server reads them: the grammar, and a memory quantity in bytes."""
import re

# The API server's quantity grammar: a decimal number and a binary (Ki..Ei), decimal (n..E) or exponent suffix.
QUANTITY = re.compile(r"^\+?(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][-+]?\d+)?$")
CPU_QUANTITY = re.compile(r"^(\d+(\.\d*)?|\.\d+)m?$")  # cores, or millicores
SUFFIXES = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "m": 1e-3, "n": 1e-9, "u": 1e-6,
            **{f"{p}i": 2 ** (10 * (i + 1)) for i, p in enumerate("KMGTPE")}}


def quantity_bytes(quantity):
    """A Kubernetes memory quantity (QUANTITY's forms, which check_config checked) in bytes."""
    number, _, suffix = QUANTITY.match(quantity).groups()
    exponent = re.fullmatch(r"[eE]([-+]?\d+)", suffix or "")
    return float(number) * (10.0 ** int(exponent.group(1)) if exponent else SUFFIXES[suffix or ""])


def cpu_cores(quantity):
    """A CPU quantity (CPU_QUANTITY's forms: cores, or millicores) in cores."""
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)
