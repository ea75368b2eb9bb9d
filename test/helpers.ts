// The comparison the reference cases prescribe (shared/reference/FORMAT.md), reused by every test.
export { relativeError } from '../app/reference-case.js';
