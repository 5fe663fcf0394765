-- FOCUS_UNIT(x): a provider's unit in FOCUS Unit Format. Procedure SQL calls it like a function; the loader
-- (shared/procedures.py) puts this expression in its place with `unit_in` bound to the argument.
-- AWS: GB-Mo -> GB-Months, Obj-Month -> Object-Months, Hrs -> Hours; NULL stays NULL.
REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(unit_in, r'-Mo(nth)?$', '-Months'), r'Hrs$', 'Hours'), r'^Obj-', 'Object-')
