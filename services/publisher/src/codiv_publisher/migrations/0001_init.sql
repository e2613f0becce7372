-- publisher schema: tables are added by later migrations.
SELECT 1;
