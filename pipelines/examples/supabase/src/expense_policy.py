"""Expense approval rules of the example app, the same ones the database's
RLS policies and `approve_expense` enforce, for the pre-flight tests."""

from dataclasses import dataclass

ROLES = ("admin", "approver", "employee")
#: Claims above this amount need an admin, not only an approver.
ADMIN_LIMIT = 1000


@dataclass(frozen=True)
class Claim:
    employee_id: str
    amount: float
    status: str = "submitted"


def may_see(role: str, viewer_id: str, claim: Claim) -> bool:
    """Admins and approvers see every claim; employees their own."""
    _check_role(role)
    return role in ("admin", "approver") or claim.employee_id == viewer_id


def may_approve(role: str, viewer_id: str, claim: Claim) -> bool:
    """Nobody approves their own claim; large claims need an admin."""
    _check_role(role)
    if claim.status != "submitted" or claim.employee_id == viewer_id:
        return False
    if role == "admin":
        return True
    return role == "approver" and claim.amount <= ADMIN_LIMIT


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
