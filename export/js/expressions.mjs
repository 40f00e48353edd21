// A numeric task's choices for its ranking student: the JavaScript port of edgedistill/edge/expressions.py
// (tests/test_js_runtime.py holds the two to the same lists and values). Every expression of one
// arithmetic operation over two distinct numbers of the problem is a choice; the student ranks
// (problem, expression) pairs and the answer is the chosen expression's value.

// A number as a problem writes it: 84, 3.5, 12,000 in ASCII digits, not preceded by a word character or
// a dot (Python's \w: letters, numbers and "_" of any script).
const NUMBER = /(?<![\p{L}\p{N}_.])[0-9]+(?:,[0-9]{3})*(?:\.[0-9]+)?/gu;
export const MAX_NUMBERS = 8;
const OPERATIONS = { "+": (a, b) => a + b, "-": (a, b) => a - b, "*": (a, b) => a * b, "/": (a, b) => a / b };

/** The distinct numbers of a text in order of first appearance, thousands separators dropped (at most 8). */
export function numbers(text) {
  const out = [];
  for (const m of String(text).matchAll(NUMBER)) {
    const n = m[0].replaceAll(",", "");
    if (!out.includes(n)) out.push(n);
  }
  return out.slice(0, MAX_NUMBERS);
}

/** For each pair in order: a + b, a - b, b - a, a * b, a / b, b / a (no division by zero); [] under two numbers. */
export function candidates(text) {
  const ns = numbers(text);
  const out = [];
  for (let i = 0; i < ns.length; i++) {
    for (let j = i + 1; j < ns.length; j++) {
      const [a, b] = [ns[i], ns[j]];
      out.push(`${a} + ${b}`, `${a} - ${b}`, `${b} - ${a}`, `${a} * ${b}`);
      for (const [x, y] of [[a, b], [b, a]]) if (Number(y) !== 0) out.push(`${x} / ${y}`);
    }
  }
  return out;
}

/** A candidate's value in double-precision arithmetic, as Python's expressions.value. */
export function value(expr) {
  const [a, op, b] = expr.split(" ");
  return OPERATIONS[op](Number(a), Number(b));
}

/** A candidate's value as an app shows it, Python's "%.10g": "84 / 2" -> "42", "1 / 3" -> "0.3333333333". */
export function valueOf(expr) {
  return formatG(value(expr), 10);
}

/** Python's format(x, ".{p}g"): p significant digits, ties to even, trailing zeros dropped, exponent form
 * when the exponent is under -4 or at least p (two exponent digits or more). */
export function formatG(x, p) {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  const sign = x < 0 || Object.is(x, -0) ? "-" : "";
  if (x === 0) return `${sign}0`;
  const abs = Math.abs(x);
  const [mantissa, e] = abs.toExponential(p - 1).split("e");
  let digits = mantissa.replace(".", "");
  let exp = Number(e);
  // JS rounds an exact tie away from zero, Python to even: the exact expansion decides (a double's is
  // shorter than 100 digits wherever a tie at digit p+1 is possible)
  const [long, longExp] = abs.toExponential(99).split("e");
  const exact = long.replace(".", "");
  if (exact[p] === "5" && /^0*$/.test(exact.slice(p + 1)) && Number(exact[p - 1]) % 2 === 0) {
    digits = exact.slice(0, p);
    exp = Number(longExp);
  }
  digits = digits.replace(/0+$/, "") || "0";
  if (exp < -4 || exp >= p) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  if (exp < 0) return `${sign}0.${"0".repeat(-exp - 1)}${digits}`;
  const whole = digits.slice(0, exp + 1).padEnd(exp + 1, "0");
  const frac = digits.slice(exp + 1);
  return `${sign}${whole}${frac ? `.${frac}` : ""}`;
}
