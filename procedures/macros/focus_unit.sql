-- FOCUS_UNIT(unit_in): a provider's unit of measure in the FOCUS Unit Format, or NULL when it cannot be one (NULL
-- or blank text, a usage type such as USW2-AmazonApiGatewayRequest, a fractional unit quantity): the caller
-- chooses the fallback ('Units', or a better column). Procedure SQL calls it like a function; the loader
-- (shared/procedures.py) puts this expression in its place with `unit_in` bound to the argument, and
-- shared/units.py runs the same expression for the extractors and for Python (one normaliser for every path).
--
-- Unit Format (FOCUS 1.3, attributes/unit_format.md): data sizes as the allowed abbreviations (GB, GiB, B),
-- time units by their allowed names, other base units capitalized nouns; '-' joins a compound (GB-Hours),
-- '/' a ratio (Units/Month); a simple unit plural, a compound '<singular>-<plural>', a ratio's time
-- denominator singular ('<n> <plural>' after a denominator quantity); a unit quantity a positive integer
-- before the units ('1000 Tokens'). Examples, per provider:
--   AWS    Hrs -> Hours, GB-Mo -> GB-Months, Bucket-Mo -> Bucket-Months, Obj-Month -> Object-Months,
--          Lambda-GB-Second -> GB-Seconds, Request / API Request -> Requests, Second -> Seconds,
--          Count -> Counts, IOs -> IOs, 1K tokens -> 1000 Tokens, vCPU-Hours -> VCPU-Hours,
--          ReadCapacityUnit-Hrs -> Unit-Hours, Hosted Zone -> Zones
--   Azure  1 Hour -> Hours, 10K -> 10000 Units, 1 GB/Month -> GB-Months, 1/Month -> Units/Month,
--          10,000 Requests per Month -> 10000 Requests/Month
--   GCP    gibibyte month -> GiB-Months, hour -> Hours, requests -> Requests, byte-seconds -> B-Seconds,
--          1000 count -> 1000 Counts, 1000000 token -> 1000000 Tokens
--   OCI    GB Months -> GB-Months, OCPU Hours -> OCPU-Hours, Million Datapoints -> 1000000 Datapoints
-- The result of a FOCUS unit is that unit (the expression is idempotent). A data size per time unit is the
-- size held over that time (Azure's '1 GB/Month' is what AWS calls GB-Mo and GCP 'gibibyte month').
-- Base units other than sizes and times are a capitalized word or an acronym, as the gate's Unit Format rule
-- (shared/focus.py) has them; a currency code is no unit here (callers put the billing currency themselves).
-- Each step is a subquery over the one before, so each value is computed once and the nesting stays shallow.
(SELECT REGEXP_EXTRACT(
          IF(REGEXP_CONTAINS(unit_p, r'(?i)(?:^|[ /-])(?:hrs?|mins?|secs?|mos?|mths?|yrs?|wks?|weeks?|quarters?|ms|nanoseconds?|(?:kilo|mega|giga|tera|peta|exa|kibi|mebi|gibi|tebi|pebi|exbi)?(?:bit|byte)s?|(?:[kmgtpe]i?)?bs)(?:$|[ /-])'), NULL,
             IF(REGEXP_CONTAINS(unit_p, r'^[a-z]'), CONCAT(UPPER(SUBSTR(unit_p, 1, 1)), SUBSTR(unit_p, 2)), unit_p)),
          r'^((?:[1-9][0-9]* )?(?:(?:(?:[KMGTPE]i?)?[bB]|(?:Year|Month|Day|Hour|Minute|Second|Millisecond|Microsecond)|[A-Z][a-z]+|[A-Z]{2,})-(?:(?:[KMGTPE]i?)?[bB]|(?:Year|Month|Day|Hour|Minute|Second|Millisecond|Microsecond)s|[A-Z][a-z]*s|[A-Z]{2,}s)|(?:(?:[KMGTPE]i?)?[bB]|(?:Year|Month|Day|Hour|Minute|Second|Millisecond|Microsecond)s|[A-Z][a-z]*s|[A-Z]{2,}s))(?:/(?:[1-9][0-9]* (?:(?:[KMGTPE]i?)?[bB]|(?:Year|Month|Day|Hour|Minute|Second|Millisecond|Microsecond)s|[A-Z][a-z]*s|[A-Z]{2,}s)|(?:(?:[KMGTPE]i?)?[bB]|(?:Year|Month|Day|Hour|Minute|Second|Millisecond|Microsecond)|[A-Z][a-z]+|[A-Z]{2,})))?)$')
 FROM (
   -- 4. structure and number: '<n>/<time>' -> 'Units/<time>', a data size per time unit is the size held over
   --    time ('GB/Month' -> 'GB-Months'), '<noun> <time>' -> '<noun>-<time>', a two-word noun its head noun
   --    ('Hosted Zone' -> 'Zones'; longer text is no unit); the numerator's last base unit plural (an acronym
   --    too, not one ending in B: a data size), a denominator after a quantity plural, a unit quantity 1 dropped
   SELECT REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(
          REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(unit_z,
            r'^(\d+ )?/', r'\1Unit/'),
            r'^((?:\d+ )?(?:[KMGTPE]i?B|B))/(Year|Month|Day|Hour|Minute|Second)$', r'\1-\2'),
            r'([A-Za-z]) (Year|Month|Day|Hour|Minute|Second|Millisecond|Microsecond)\b', r'\1-\2'),
            r'^(\d+ )?[A-Z][a-z]+ ([A-Z][a-z]+)$', r'\1\2'),
            r'^(\d+)$', r'\1 Unit'),
            r'^((?:[^/]*[ -])?[A-Z]+[AC-RT-Z])((?:/.*)?)$', r'\1s\2'),
            r'^((?:[^/]*[ -])?[A-Za-z]*[b-df-hj-np-tv-z])y((?:/.*)?)$', r'\1ies\2'),
            r'^((?:[^/]*[ -])?[A-Za-z]*(?:ch|sh|x|z))((?:/.*)?)$', r'\1es\2'),
            r'^((?:[^/]*[ -])?[A-Za-z]*[a-rt-z])((?:/.*)?)$', r'\1s\2'),
            r'/(\d+) (Year|Month|Day|Hour|Minute|Second|Millisecond|Microsecond)$', r'/\1 \2s'),
            r'^1 ', '') AS unit_p
   FROM (
     -- 3. data sizes: the Unit Format's abbreviations (a provider's 'Gb' is a gigabyte too)
     SELECT REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(
            REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(
            REGEXP_REPLACE(unit_w,
              r'(?i)\bbytes?\b', 'B'),
              r'(?i)\b(?:kb|kilobytes?)\b', 'KB'),
              r'(?i)\b(?:mb|megabytes?)\b', 'MB'),
              r'(?i)\b(?:gb|gigabytes?)\b', 'GB'),
              r'(?i)\b(?:tb|terabytes?)\b', 'TB'),
              r'(?i)\b(?:pb|petabytes?)\b', 'PB'),
              r'(?i)\b(?:eb|exabytes?)\b', 'EB'),
              r'(?i)\b(?:kib|kibibytes?)\b', 'KiB'),
              r'(?i)\b(?:mib|mebibytes?)\b', 'MiB'),
              r'(?i)\b(?:gib|gibibytes?)\b', 'GiB'),
              r'(?i)\b(?:tib|tebibytes?)\b', 'TiB'),
              r'(?i)\b(?:pib|pebibytes?)\b', 'PiB'),
              r'(?i)\b(?:eib|exbibytes?)\b', 'EiB') AS unit_z
     FROM (
       -- 2. time and count words: the Unit Format's names, singular (step 4 makes the last one plural)
       SELECT REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(
              REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(
              REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(unit_c,
                r'(?i)\blambda-', ''),
                r'(?i)\b(?:years?|yrs?)\b', 'Year'),
                r'(?i)\b(?:months?|mos?|mths?)\b', 'Month'),
                r'(?i)\bdays?\b', 'Day'),
                r'(?i)\b(?:hours?|hrs?)\b', 'Hour'),
                r'(?i)\b(?:minutes?|mins?)\b', 'Minute'),
                r'(?i)\b(?:seconds?|secs?)\b', 'Second'),
                r'(?i)\b(?:milliseconds?|ms)\b', 'Millisecond'),
                r'(?i)\bmicroseconds?\b', 'Microsecond'),
                r'(?i)\b(?:api requests?|api calls?|requests?|reqs?)\b', 'Request'),
                r'(?i)\btokens?\b', 'Token'),
                r'(?i)\bcounts?\b', 'Count'),
                r'(?i)\bunits?\b', 'Unit'),
                r'(?i)\b(?:objects?|objs?)\b', 'Object'),
                r'(?i)\bios\b', 'IO') AS unit_w
       FROM (
         -- 1. spacing, separators and unit quantities: '10,000' -> '10000', ' per ' -> '/', '1K' -> '1000',
         --    '1M' -> '1000000', 'Million' -> '1000000'; notes in parentheses dropped; a run-together noun is
         --    its head noun (ReadCapacityUnit -> Unit, HostedZone -> Zone, vCore -> Core)
         SELECT REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(
                REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(REGEXP_REPLACE(
                REGEXP_REPLACE(TRIM(unit_in),
                  r'[\s_]+', ' '),
                  r' ?\([^)]*\)', ''),
                  r'(\d),(\d\d\d)', r'\1\2'),
                  r'(\d),(\d\d\d)', r'\1\2'),
                  r'(?i)^per ', ''),
                  r'(?i) per | ?/ ?', '/'),
                  r'^(\d+)/', r'\1 /'),
                  r'(?i)^(\d+) ?k\b ?', r'\1000 '),
                  r'(?i)^(\d+) ?m\b ?', r'\1000000 '),
                  r'(?i)^million\b ?', '1000000 '),
                  r'\b(?:[A-Z][a-z]+)+([A-Z][a-z]+)\b', r'\1'),
                  r'\b(?:[A-Z]+|[a-z]+)([A-Z][a-z]{2,})\b', r'\1'),
                  r'^ +| +$', '') AS unit_c)))))
