"""The maintenance of the index: the daily reconciliation record, purges and the deletion guard."""
