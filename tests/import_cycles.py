"""An import-linter contract type: no import circle between modules (`lint-imports`; configured in
pyproject.toml). import-linter's own acyclic_siblings contract compares whole packages with their siblings
(memsvc.store against memsvc.lifecycle, say); this one compares modules, imports inside function bodies
included, so a circle hidden in a function fails as surely as one at the top of a file."""

from __future__ import annotations

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def module_cycles(graph: ImportGraph, packages: list[str]) -> list[list[str]]:
    """The import circles among the modules of `packages`: each strongly connected component of two or more
    modules, in import order from its first module (Tarjan's algorithm, iterative)."""
    inside = {m for m in graph.modules if m.split(".")[0] in packages}
    edges = {m: sorted(i for i in graph.find_modules_directly_imported_by(m) if i in inside) for m in inside}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(inside):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if i < len(edges[node]):
                work.append((node, i + 1))
                nxt = edges[node][i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


class AcyclicModulesContract(Contract):
    type_name = "acyclic_modules"

    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        cycles = module_cycles(graph, list(self.packages))  # type: ignore[arg-type]
        chains = []
        for cycle in cycles:  # one concrete circle per component, to show where to cut
            first, second = cycle[0], None
            for candidate in graph.find_modules_directly_imported_by(first):
                if candidate in cycle:
                    second = candidate
                    break
            back = graph.find_shortest_chain(importer=second, imported=first) if second else None
            chains.append([first, *(back or ())])
        return ContractCheck(kept=not cycles, warnings=[], metadata={"cycles": cycles, "chains": chains})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for cycle, chain in zip(check.metadata["cycles"], check.metadata["chains"], strict=True):
            output.print_error(f"Import circle among {', '.join(cycle)}:")
            output.print_error("    " + " -> ".join(chain))
            output.new_line()
