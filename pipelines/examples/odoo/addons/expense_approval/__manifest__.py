# -*- coding: utf-8 -*-
{
    'name': "Expense approval",
    'version': '17.0.1.2.0',
    'summary': "Approval workflow for the expenses the Supabase app records",
    'depends': ['hr_expense', 'mail', 'expense_sync'],
    'data': ['views/expense_approval_views.xml'],
    'installable': True,
    'license': 'LGPL-3',
}
