-- Who sees and changes what: employees their own claims, approvers every
-- claim's status, admins everything.
create function public.app_role() returns text
    language sql stable security definer set search_path = public
as $$
    select role from public.employees where id = auth.uid()
$$;

create policy "read own profile, admins all" on public.employees
    for select to authenticated
    using (id = auth.uid() or public.app_role() = 'admin');

create policy "employees read own claims" on public.expenses
    for select to authenticated
    using (employee_id = auth.uid() or public.app_role() in ('approver', 'admin'));

create policy "employees file own claims" on public.expenses
    for insert to authenticated
    with check (employee_id = auth.uid() and status = 'pending');

create policy "approvers decide" on public.expenses
    for update to authenticated
    using (public.app_role() in ('approver', 'admin'))
    with check (public.app_role() in ('approver', 'admin'));

create policy "admins delete" on public.expenses
    for delete to authenticated
    using (public.app_role() = 'admin');
