// ESLint for the TypeScript sources (type-aware, through tsconfig.json) and the few plain JS scripts.
// Layout is prettier's job (.prettierrc.json); these rules look for bugs. npm run lint checks, npm run format fixes.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/', 'native/build/', 'node_modules/'] },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      globals: globals.node,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // Validators name the control characters they refuse.
      'no-control-regex': 'off',
      // Synchronous implementations of async interfaces (the SQLite store, test doubles) are async so that a throw
      // becomes a rejection.
      '@typescript-eslint/require-await': 'off',
      // It cannot see that execFile's error and AbortSignal.reason are errors.
      '@typescript-eslint/prefer-promise-reject-errors': 'off',
      // A leading underscore marks what is unused on purpose (as tsconfig's noUnusedParameters does).
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
      // prettier wraps code at 120 but leaves long comments alone; strings may stay whole so messages can be grepped.
      'max-len': [
        'error',
        {
          code: 120,
          ignoreStrings: true,
          ignoreTemplateLiterals: true,
          ignoreRegExpLiterals: true,
          ignoreUrls: true,
        },
      ],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      '@typescript-eslint/return-await': ['error', 'in-try-catch'],
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/consistent-type-imports': [
        'error',
        { fixStyle: 'inline-type-imports', disallowTypeAnnotations: false },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    extends: [tseslint.configs.disableTypeChecked],
  },
);
