# jq 1.7 builtins that jaq (core 3.1, std 3.0, json 2.0, the newest releases) lacks or
# defines differently, compiled with every Mapping so that a program written for jq 1.7
# runs as it does there. A definition here shadows jaq's of the same name and arity.
# The conformance test (manual_tests.rs) runs jq 1.7's manual examples against these.

# SQL-style operators, as jq 1.7 defines them.
def IN(s): any(s == .; .);
def IN(src; s): any(src == s; .);
def INDEX(stream; idx_expr): reduce stream as $row ({}; .[$row | idx_expr | tostring] = $row);
def INDEX(idx_expr): INDEX(.[]; idx_expr);

# Strings. `ascii`: a code point as a one-character string (jq 1.5's name, kept by
# Mappings written for it). `ltrimstr`/`rtrimstr`: jq 1.7 leaves anything but two strings
# as it is. `join`: jq 1.7 joins null as "".
def ascii: [.] | implode;
def _jaq_ltrimstr($x): ltrimstr($x);
def _jaq_rtrimstr($x): rtrimstr($x);
def ltrimstr($x): if isstring and ($x | isstring) then _jaq_ltrimstr($x) end;
def rtrimstr($x): if isstring and ($x | isstring) then _jaq_rtrimstr($x) end;
def join($x): reduce .[] as $i (null;
    (if . == null then "" else . + $x end)
    + ($i | if type == "boolean" or type == "number" then tostring else . // "" end)
  ) // "";

# Regular expressions: jq 1.7 names unnamed captures `null` and takes `[re, flags]`.
def match(re; flags): matches(re; flags)[] | .[0] + {captures: (.[1:] | map({name: null} + .))};
def match($val): if ($val | type) == "array" then match($val[0]; $val[1] // "") else match($val; "") end;
def test($val): if ($val | type) == "array" then test($val[0]; $val[1] // "") else test($val; "") end;
def capture($val): if ($val | type) == "array" then capture($val[0]; $val[1] // "") else capture($val; "") end;

# Generators: jq 1.7 gives every output for a negative count (jaq gives none).
def _jaq_limit($n; f): limit($n; f);
def limit($n; f): if $n < 0 then f else _jaq_limit($n; f) end;

# Paths: jq 1.7 creates what is missing under null (`null | setpath(["a", 1]; 5)` is
# `{"a": [null, 5]}`), where jaq's update refuses null and indexes past an array's end.
def setpath($p; $x):
  if ($p | length) == 0 then $x
  else $p[0] as $k
    | (getpath([$k]) | setpath($p[1:]; $x)) as $v
    | if ($k | type) == "number" then
        (. // []) as $a
        | if $k >= ($a | length) then $a + [range($k - ($a | length)) | null] + [$v] else $a | .[$k] = $v end
      else (. // {}) | .[$k] = $v end
  end;
# jq 1.7 deletes every path at once: from the last, so earlier deletions move nothing.
def delpaths($paths): reduce ($paths | sort | reverse)[] as $p (.; getpath($p) |= empty);
def del(f): delpaths([path(f)]);
def pick(pathexps): . as $in | reduce path(pathexps) as $a (null; setpath($a; $in | getpath($a)));

# Streaming (jq 1.7 builtin.jq).
def truncate_stream(stream): . as $n | null | stream | . as $input
  | if (.[0] | length) > $n then setpath([0]; $input[0][$n:]) else empty end;
def fromstream(i): {x: null, e: false} as $init
  | foreach i as $i ($init;
      if .e then $init else . end
      | if $i | length == 2
        then setpath(["e"]; $i[0] | length == 0) | setpath(["x"] + $i[0]; $i[1])
        else setpath(["e"]; $i[0] | length == 1) end;
      if .e then .x else empty end);
def tostream: path(def r: (.[]? | r), .; r) as $p | getpath($p) | reduce path(.[]?) as $q ([$p, .]; [$p + $q]);

# Dates: jq 1.5's aliases, kept by Mappings written for it.
def date: todate;
def dateadd(u; n): . + n;
def datesub(u; n): . - n;
