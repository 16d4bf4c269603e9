// ESLint (flat config) for the frontend: js/ and its node tests, with typescript-eslint.
// `npm run lint` (make jstest) fails on any warning.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["llm_energy_widget/**", "node_modules/**", ".venv/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["js/**/*.ts", "tests/js/**/*.ts"],
    languageOptions: { ecmaVersion: 2020, sourceType: "module" },
    rules: {
      eqeqeq: ["warn", "always", { null: "ignore" }],
      "no-self-compare": "off", // x !== x is the NaN test on hot paths
      "@typescript-eslint/consistent-type-imports": "warn",
      "@typescript-eslint/no-unused-vars": ["warn", { argsIgnorePattern: "^_" }],
      // ui.ts keeps the view state chosen last in a module variable
      "@typescript-eslint/no-this-alias": ["error", { allowedNames: ["lastChosen"] }],
    },
  },
  {
    files: ["js/**/*.mjs", "tests/js/**/*.mjs", "eslint.config.js"],
    languageOptions: {
      globals: { console: "readonly", process: "readonly" },
    },
  },
);
