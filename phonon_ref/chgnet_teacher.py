"""CHGNet's ASE calculator with a switch to skip the stress in force-only work.

``chgnet.model.dynamics.CHGNetCalculator`` computes energy, forces, stress and magnetic
moments (task ``"efsm"``) in every call, whatever ASE asks for. The finite-displacement force
calls of phonopy need forces only: task ``"ef"`` gives bit-identical forces in less time and
memory (README, "CHGNet teacher cost"). Importing this module imports chgnet.
"""

from __future__ import annotations

from chgnet.model.dynamics import CHGNetCalculator


class CHGNetTeacher(CHGNetCalculator):
    """``CHGNetCalculator`` whose calls compute the stress only when asked for or when
    ``compute_stress`` is true (the default: one call per step of a cell relaxation, which
    asks for forces and then the stress). :func:`phonon_ref.calculators.forces_only` switches
    it off around force calls."""

    compute_stress: bool = True

    def calculate(self, atoms=None, properties=None, system_changes=None, task=None) -> None:
        if task is None:
            wanted = set(properties or ())
            full = self.compute_stress or not wanted or bool(wanted & {"stress", "magmoms"})
            task = "efsm" if full else "ef"
        super().calculate(atoms, properties, system_changes, task=task)
