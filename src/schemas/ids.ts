import { z } from 'zod';
import { ID_MAX, ID_PATTERN, ID_RULE } from '../ids.js';

/** Ids end up in workflow ids, task queues and directory names: keep them to a safe alphabet. */
export const IdSchema = z.string().min(1).max(ID_MAX).regex(ID_PATTERN, ID_RULE);
