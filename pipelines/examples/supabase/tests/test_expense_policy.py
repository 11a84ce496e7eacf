import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from expense_policy import ADMIN_LIMIT, Claim, may_approve, may_see  # noqa: E402

OWN = Claim(employee_id="c", amount=50)
OTHER = Claim(employee_id="d", amount=50)
LARGE = Claim(employee_id="d", amount=ADMIN_LIMIT + 1)


def test_employees_see_only_their_own_claims():
    assert may_see("employee", "c", OWN)
    assert not may_see("employee", "c", OTHER)


def test_admins_and_approvers_see_every_claim():
    assert may_see("admin", "a", OTHER)
    assert may_see("approver", "b", OTHER)


def test_nobody_approves_their_own_claim():
    assert not may_approve("admin", "d", OTHER)


def test_large_claims_need_an_admin():
    assert not may_approve("approver", "b", LARGE)
    assert may_approve("admin", "a", LARGE)
    assert may_approve("approver", "b", OTHER)


def test_employees_never_approve_and_decided_claims_stay_decided():
    assert not may_approve("employee", "c", OTHER)
    assert not may_approve("admin", "a", Claim(employee_id="d", amount=5, status="approved"))


def test_unknown_roles_are_refused():
    with pytest.raises(ValueError, match="unknown role"):
        may_see("intern", "x", OWN)
