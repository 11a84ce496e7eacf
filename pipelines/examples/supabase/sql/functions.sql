-- Stored procedures the API calls (deployed after the migrations).
create or replace function public.approve_expense(expense_id bigint) returns text
    language plpgsql security invoker set search_path = public
as $$
declare
    changed int;
begin
    update public.expenses set status = 'approved' where id = expense_id and status = 'pending';
    get diagnostics changed = row_count;
    if changed = 0 then
        return 'not found or not allowed';
    end if;
    return 'approved';
end
$$;

grant execute on function public.approve_expense(bigint) to authenticated;

create or replace function public.pending_total() returns numeric
    language sql stable security invoker set search_path = public
as $$
    select coalesce(sum(amount), 0) from public.expenses where status = 'pending'
$$;

grant execute on function public.pending_total() to authenticated;
