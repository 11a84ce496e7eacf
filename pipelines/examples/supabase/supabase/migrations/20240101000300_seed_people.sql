-- A small team to test the policies with.
insert into public.employees (id, name, role) values
    ('00000000-0000-0000-0000-00000000000a', 'Ada Admin', 'admin'),
    ('00000000-0000-0000-0000-00000000000b', 'Bo Approver', 'approver'),
    ('00000000-0000-0000-0000-00000000000c', 'Cy Employee', 'employee'),
    ('00000000-0000-0000-0000-00000000000d', 'Di Employee', 'employee');

insert into public.expenses (employee_id, amount, description) values
    ('00000000-0000-0000-0000-00000000000c', 42.50, 'train to client'),
    ('00000000-0000-0000-0000-00000000000c', 12.00, 'lunch'),
    ('00000000-0000-0000-0000-00000000000d', 99.90, 'conference ticket');
