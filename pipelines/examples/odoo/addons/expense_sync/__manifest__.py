# -*- coding: utf-8 -*-
{
    'name': "Expense sync",
    'version': '1.0.0',
    'summary': "Receives the Supabase webhook (/health/odoo checks it)",
    'depends': ['base', 'hr_expense'],
    'installable': True,
    'license': 'LGPL-3',
}
