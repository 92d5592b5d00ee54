{#- Jinja macros shared by the ETL templates: structure only, never values. -#}
{#- Entity sections of ProfileData: (json section, stage suffix, id field, id column, [(json field, column, default, max)]). -#}
{% set ENTITIES = [
  {"section": "Troops", "name": "troop", "table": "user_troops", "catalog": "troop_catalog",
   "id_field": "TroopId", "id_col": "troop_id",
   "ints": [("Amount", "amount", 0, 2147483647), ("Level", "level", 1, 2147483647),
            ("Rarity", "rarity", 0, 2147483647), ("FusionCards", "fusion_cards", 0, 2147483647),
            ("TraitsOwned", "traits_owned", 0, 2147483647)],
   "arrays": []},
  {"section": "Pets", "name": "pet", "table": "user_pets", "catalog": "pet_catalog",
   "id_field": "PetId", "id_col": "pet_id",
   "ints": [("Amount", "amount", 0, 2147483647), ("Level", "level", 1, 2147483647),
            ("XP", "xp", 0, 9223372036854775807), ("OrbFusionCards", "orb_fusion_cards", 0, 2147483647),
            ("AscensionLevel", "ascension_level", 0, 2147483647)],
   "arrays": [("OrbsUsed", "orbs_used")]},
  {"section": "Artifacts", "name": "artifact", "table": "user_artifacts", "catalog": "artifact_catalog",
   "id_field": "ArtifactId", "id_col": "artifact_id",
   "ints": [("Level", "level", 0, 2147483647), ("XP", "xp", 0, 9223372036854775807)],
   "arrays": []},
] %}

{#- The contract's integer rule as a numeric (NULL when the JSON value is not an integer form); never raises.
    Leading zeros do not count toward the 40-digit cap ("000...0101" is 101, as in the reference). -#}
{% macro num(v) -%}
CASE jsonb_typeof({{ v }}) WHEN 'number' THEN ({{ v }})::numeric WHEN 'string' THEN CASE WHEN ({{ v }} #>> '{}') ~ '^-?0*[0-9]{1,40}$' THEN ({{ v }} #>> '{}')::numeric END END
{%- endmacro %}

{#- True when numeric n (from num()) is an integer within [lo, hi]. -#}
{% macro in_range(n, lo, hi) -%}
({{ n }} IS NOT NULL AND {{ n }} = trunc({{ n }}) AND {{ n }} BETWEEN {{ lo }} AND {{ hi }})
{%- endmacro %}

{#- Regex for a sensitive key: it contains one of the contract's parts in any case, as Python's str.lower()
    sees it. Spelled with explicit character classes and matched with the case-sensitive `~`: `~*` depends on
    the database's locale (under a Turkish one "I" is not the capital of "i"). The Kelvin sign (U+212A) is a
    "k" to str.lower(); U+0130 lowers to "i" plus a combining dot, which cannot complete any part. A unit test
    derives this regex from etl.contract.SENSITIVE_PARTS and checks those two facts over all of Unicode. -#}
{% set SENSITIVE_RE = "([tT][oO][kK\\u212a][eE][nN]|[pP][aA][sS][sS][wW][oO][rR][dD]|[pP][aA][sS][sS][wW][dD]|[sS][eE][cC][rR][eE][tT]|[sS][eE][sS][sS][iI][oO][nN]|[aA][uU][tT][hH]|[uU][sS][eE][rR][nN][aA][mM][eE])" %}

{#- Fast-path integer check on a field extracted as text (jsonb_to_record with a text column): a JSON
    integer, a float with an all-zero fraction, or a string of digits, non-negative and within the column
    (up to hi, inclusive: the reference path re-stages its canonical payload through this same check, so
    every value the contract accepts must pass here). The common case (up to 9 plain digits) costs one
    regex; a fraction is accepted only from a JSON number (`raw` is the element: the text column cannot
    tell the JSON string "12.0", which the contract rejects, from the number 12.0). Everything else
    (negative zero, leading zeros past the column's digit count, bools, objects, ...) is not ok here and
    goes to the exact per-snapshot reference, which accepts or rejects it per the contract. -#}
{% macro int_ok(v, hi, raw, field) -%}
CASE WHEN {{ v }} IS NULL THEN true
     WHEN octet_length({{ v }}) BETWEEN 1 AND 9 AND translate({{ v }}, '0123456789', '') = '' THEN true
     WHEN {{ v }} ~ '^[0-9]{1,{{ 19 if hi > 2147483647 else 10 }}}(\.0+)?$'
     THEN ({{ v }})::numeric <= {{ hi }}
          AND (strpos({{ v }}, '.') = 0 OR jsonb_typeof({{ raw }} -> {{ sqlstr(field) }}) = 'number')
     ELSE false END
{%- endmacro %}

{#- The value of a field that int_ok() accepted. -#}
{% macro int_val(v, type) -%}
CASE WHEN strpos({{ v }}, '.') > 0 THEN ({{ v }})::numeric::{{ type }} ELSE ({{ v }})::{{ type }} END
{%- endmacro %}
