"""The vendor's operator, as the kit talks to them.

`ConsoleOperator` prints what to send and asks yes/no questions on the terminal. `JsonLinesOperator`
does the same as one JSON object a line on stdout, answers as one JSON object a line on stdin, so a
vendor's test rig (or our own tests) can drive its HIS from the kit's steps:

    {"event": "step", "scenario": "collect", "text": "...", "action": {"send": "+12.34", "order_no": "...", "terminal_id": "T0001"}}
    {"event": "confirm", "scenario": "collect", "key": "booked", "question": "Did HIS book ...?",
     "facts": {"order_no": "...", "amount": "+12.34"}}                                  <- {"answer": true}
"""

from __future__ import annotations

import json
import sys
from typing import IO, Protocol


class Operator(Protocol):
    def step(self, scenario: str, text: str, action: dict[str, object]) -> None: ...
    def confirm(self, scenario: str, key: str, question: str, facts: dict[str, object]) -> bool: ...
    def note(self, text: str) -> None: ...


class ConsoleOperator:
    def __init__(self, out: IO[str] = sys.stdout, inp: IO[str] = sys.stdin) -> None:
        self.out, self.inp = out, inp

    def step(self, scenario: str, text: str, action: dict[str, object]) -> None:
        print(f"\n[{scenario}] {text}", file=self.out, flush=True)

    def confirm(self, scenario: str, key: str, question: str, facts: dict[str, object]) -> bool:
        while True:
            print(f"[{scenario}] {question} [y/n] ", end="", file=self.out, flush=True)
            line = self.inp.readline()
            if not line:
                return False  # no operator: nothing confirmed
            answer = line.strip().lower()
            if answer in ("y", "yes", "是"):
                return True
            if answer in ("n", "no", "否"):
                return False

    def note(self, text: str) -> None:
        print(text, file=self.out, flush=True)


class JsonLinesOperator:
    def __init__(self, out: IO[str] = sys.stdout, inp: IO[str] = sys.stdin) -> None:
        self.out, self.inp = out, inp

    def _emit(self, obj: dict[str, object]) -> None:
        self.out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.out.flush()

    def step(self, scenario: str, text: str, action: dict[str, object]) -> None:
        self._emit({"event": "step", "scenario": scenario, "text": text, "action": action})

    def confirm(self, scenario: str, key: str, question: str, facts: dict[str, object]) -> bool:
        self._emit({"event": "confirm", "scenario": scenario, "key": key, "question": question, "facts": facts})
        line = self.inp.readline()
        try:
            return json.loads(line).get("answer") is True
        except (ValueError, AttributeError):
            return False

    def note(self, text: str) -> None:
        self._emit({"event": "note", "text": text})
