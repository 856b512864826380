/**
 * Who may do what with a project (docs/api.md): the owner or an admin
 * writes; reads are public unless GALLERY_PUBLIC_READ=false, and then only
 * the owner or an admin. Anyone else meets the 404 of the thing asked for,
 * so that an answer never tells which projects or images exist.
 */
import type { Principal } from '../../auth/principal.js';
import { NotFound, Unauthorized, ValidationFailed } from '../../errors.js';

export const PROJECT_ID = /^[A-Za-z0-9_-]{1,64}$/;

export const projectNotFound = (): NotFound => new NotFound('No such project.', 'project_not_found');
export const imageNotFound = (): NotFound => new NotFound('No such image.', 'image_not_found');

export function canWrite(principal: Principal, ownerId: string): boolean {
  return principal.isAdmin || principal.userId === ownerId;
}

export function assertProjectId(projectId: string): void {
  if (!PROJECT_ID.test(projectId)) {
    throw new ValidationFailed('project_id must be 1 to 64 letters, digits, "_" or "-".', [
      { field: 'params.project_id', message: 'must match ^[A-Za-z0-9_-]{1,64}$' },
    ]);
  }
}

/**
 * With private reads, no credentials is a 401 before anything is looked
 * up: a 404 for a project that does not exist would tell which exist.
 */
export function assertMayAskToRead(publicRead: boolean, principal: Principal | null): void {
  if (!publicRead && !principal) throw new Unauthorized('This gallery needs credentials to read.');
}

/** With private reads, someone who may not read gets `hidden()`: the 404 of the thing asked for when it does not exist. */
export function assertCanRead(publicRead: boolean, principal: Principal | null, ownerId: string, hidden: () => NotFound = projectNotFound): void {
  if (publicRead) return;
  if (!principal) throw new Unauthorized('This gallery needs credentials to read.');
  if (!canWrite(principal, ownerId)) throw hidden();
}
